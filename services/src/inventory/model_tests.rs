//! The stock arithmetic as tables: what a reservation takes, from where, and what it leaves.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;

fn stock(product_id: &str, warehouses: &[(&str, u64, u64)]) -> Stock {
    let mut stock = Stock::new(product_id);
    for (name, available, reserved) in warehouses {
        stock.warehouses.insert(
            name.to_string(),
            Units {
                available: *available,
                reserved: *reserved,
            },
        );
    }
    stock
}

fn stocks(all: Vec<Stock>) -> BTreeMap<String, Stock> {
    all.into_iter()
        .map(|stock| (stock.product_id.clone(), stock))
        .collect()
}

fn item(product_id: &str, quantity: u64) -> Item {
    Item {
        product_id: product_id.to_string(),
        quantity,
    }
}

fn units(stocks: &BTreeMap<String, Stock>, product: &str, warehouse: &str) -> (u64, u64) {
    let units = stocks[product].warehouses[warehouse];
    (units.available, units.reserved)
}

#[test]
fn reserve_takes_from_warehouses_in_name_order() {
    let mut all = stocks(vec![stock("p", &[("west", 5, 0), ("east", 2, 1)])]);
    let allocations = reserve(&mut all, &[item("p", 4)]).unwrap();
    assert_eq!(
        allocations,
        vec![
            Allocation {
                product_id: "p".into(),
                warehouse: "east".into(),
                quantity: 2
            },
            Allocation {
                product_id: "p".into(),
                warehouse: "west".into(),
                quantity: 2
            },
        ]
    );
    assert_eq!(units(&all, "p", "east"), (0, 3));
    assert_eq!(units(&all, "p", "west"), (3, 2));
    assert_eq!(
        all["p"].totals(),
        Units {
            available: 3,
            reserved: 5
        }
    );
}

#[test]
fn reserve_is_all_or_nothing_across_items() {
    let before = stocks(vec![
        stock("a", &[("main", 10, 0)]),
        stock("b", &[("main", 1, 0)]),
    ]);
    let mut all = before.clone();
    let shortage = reserve(&mut all, &[item("a", 3), item("b", 2)]).unwrap_err();
    assert_eq!(
        shortage,
        Shortage {
            product_id: "b".into(),
            reason: "insufficient_stock"
        }
    );
    assert_eq!(all, before, "a refused reservation changes nothing");

    let shortage = reserve(&mut all, &[item("a", 1), item("ghost", 1)]).unwrap_err();
    assert_eq!(shortage.reason, "unknown_product");
    assert_eq!(shortage.product_id, "ghost");
    assert_eq!(all, before);
}

#[test]
fn a_product_listed_twice_needs_both_quantities() {
    let mut all = stocks(vec![stock("a", &[("main", 3, 0)])]);
    assert!(reserve(&mut all, &[item("a", 2), item("a", 2)]).is_err());
    let allocations = reserve(&mut all, &[item("a", 2), item("a", 1)]).unwrap();
    assert_eq!(allocations.len(), 1);
    assert_eq!(allocations[0].quantity, 3);
    assert_eq!(units(&all, "a", "main"), (0, 3));
}

#[test]
fn never_oversells_one_unit_at_a_time() {
    let mut all = stocks(vec![stock("a", &[("main", 10, 0)])]);
    let granted = (0..30)
        .filter(|_| reserve(&mut all, &[item("a", 1)]).is_ok())
        .count();
    assert_eq!(granted, 10);
    assert_eq!(units(&all, "a", "main"), (0, 10));
}

#[test]
fn release_returns_units_where_they_came_from_and_commit_removes_them() {
    let mut all = stocks(vec![stock("p", &[("a", 1, 0), ("b", 5, 0)])]);
    let first = reserve(&mut all, &[item("p", 3)]).unwrap();
    let second = reserve(&mut all, &[item("p", 2)]).unwrap();
    assert_eq!(units(&all, "p", "a"), (0, 1));
    assert_eq!(units(&all, "p", "b"), (1, 4));
    release(&mut all, &first);
    assert_eq!(units(&all, "p", "a"), (1, 0));
    assert_eq!(units(&all, "p", "b"), (3, 2));
    commit(&mut all, &second);
    assert_eq!(units(&all, "p", "b"), (3, 0));
    assert_eq!(
        all["p"].totals(),
        Units {
            available: 4,
            reserved: 0
        }
    );
}

#[test]
fn release_and_commit_never_go_below_zero() {
    let mut all = stocks(vec![stock("p", &[("main", 0, 1)])]);
    let too_much = [Allocation {
        product_id: "p".into(),
        warehouse: "main".into(),
        quantity: 5,
    }];
    commit(&mut all, &too_much);
    assert_eq!(units(&all, "p", "main"), (0, 0));
    release(&mut all, &too_much);
    assert_eq!(units(&all, "p", "main"), (0, 0));
}

#[test]
fn ids_and_warehouses_are_checked() {
    assert!(check_product_id("").is_err());
    assert!(check_product_id("a/b").is_err());
    assert!(check_product_id(&"x".repeat(129)).is_err());
    assert_eq!(check_product_id("p-1").unwrap(), "p-1");
    assert_eq!(check_warehouse(None).unwrap(), "main");
    assert_eq!(check_warehouse(Some(" east-1 ")).unwrap(), "east-1");
    assert!(check_warehouse(Some("no spaces")).is_err());
}
