//! The built-in test provider's books as a state machine of their own.
//!
//! The test provider stands for an outside PSP that every node talks to: whichever node
//! charges, the books are one, and a key asked again (on any node) answers its first answer
//! without moving money twice. So the books are not a node's file but a deterministic state
//! machine over its own command log (its own store, `<data-dir>/services/payment-provider`),
//! which a cluster replicates like any service's.
//!
//! The charge and refund ids are made before the command is logged and the time is the
//! command's; apply decides by the test-card convention ([`decide`]) and remembers each
//! idempotency key's answer, so replicas applying the same commands keep the same books.

use super::model::{ChargeOutcome, DeclineReason, RefundOutcome, last4, luhn_valid};
use crate::platform::store::{Table, Transaction};
use crate::platform::{CommandMeta, Money, Rejection, StateMachine, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One real charge in the test provider's books, by charge id.
pub const CHARGES: Table<LedgerCharge> = Table::new("charge");
/// What the provider answered to each idempotency key, so that the key answers the same
/// forever.
pub const ANSWERS: Table<Answer> = Table::new("answer");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LedgerCommand {
    /// Charge a card unless this idempotency key was answered before.
    Charge {
        idempotency_key: String,
        /// The id the charge gets if it is captured.
        charge_id: String,
        amount: Money,
        card_number: String,
        /// Free-form metadata kept with the charge (the order id).
        reference: String,
    },
    /// Refund part or all of a charge unless this idempotency key was answered before.
    Refund {
        idempotency_key: String,
        /// The id the refund gets if it is made.
        refund_id: String,
        charge_id: String,
        amount: Money,
    },
}

/// One real charge in the test provider's books.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LedgerCharge {
    pub charge_id: String,
    pub idempotency_key: String,
    /// The charge's reference (the order id).
    pub order_id: String,
    pub amount: Money,
    pub card_last4: String,
    /// Refunded so far, in the charge's currency.
    pub refunded: i64,
    pub at_ms: i64,
}

/// What the provider answered to a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    Charge(ChargeOutcome),
    Refund(RefundOutcome),
}

/// The decision the test-card convention makes for a card number.
pub fn decide(card_number: &str) -> Result<(), DeclineReason> {
    match card_number {
        "4242424242424242" => Ok(()),
        "4000000000000002" => Err(DeclineReason::CardDeclined),
        "4000000000009995" => Err(DeclineReason::InsufficientFunds),
        other if luhn_valid(other) => Ok(()),
        _ => Err(DeclineReason::InvalidCard),
    }
}

pub struct ProviderLedger;

impl StateMachine for ProviderLedger {
    type Command = LedgerCommand;
    type Output = Answer;

    fn apply(
        &self,
        tx: &mut dyn Transaction,
        command: &LedgerCommand,
        meta: &CommandMeta,
    ) -> Result<Result<Answer, Rejection>, StoreError> {
        let answer = match command {
            LedgerCommand::Charge {
                idempotency_key,
                charge_id,
                amount,
                card_number,
                reference,
            } => {
                if let Some(answer @ Answer::Charge(_)) = ANSWERS.get(tx, idempotency_key)? {
                    return Ok(Ok(answer));
                }
                let outcome = match decide(card_number) {
                    Ok(()) => {
                        let charge = LedgerCharge {
                            charge_id: charge_id.clone(),
                            idempotency_key: idempotency_key.clone(),
                            order_id: reference.clone(),
                            amount: amount.clone(),
                            card_last4: last4(card_number),
                            refunded: 0,
                            at_ms: meta.at_ms,
                        };
                        CHARGES.put(tx, charge_id, &charge)?;
                        ChargeOutcome::Captured {
                            charge_id: charge_id.clone(),
                        }
                    }
                    Err(reason) => ChargeOutcome::Declined { reason },
                };
                ANSWERS.put(tx, idempotency_key, &Answer::Charge(outcome.clone()))?;
                Answer::Charge(outcome)
            }
            LedgerCommand::Refund {
                idempotency_key,
                refund_id,
                charge_id,
                amount,
            } => {
                if let Some(answer @ Answer::Refund(_)) = ANSWERS.get(tx, idempotency_key)? {
                    return Ok(Ok(answer));
                }
                let refused = |reason: &str| RefundOutcome::Refused {
                    reason: reason.to_string(),
                };
                let outcome = match CHARGES.get(tx, charge_id)? {
                    None => refused("no_such_charge"),
                    Some(charge) if charge.amount.currency != amount.currency => {
                        refused("currency_mismatch")
                    }
                    Some(charge) if charge.refunded + amount.amount > charge.amount.amount => {
                        refused("amount_exceeds_charge")
                    }
                    Some(mut charge) => {
                        charge.refunded += amount.amount;
                        CHARGES.put(tx, charge_id, &charge)?;
                        RefundOutcome::Refunded {
                            refund_id: refund_id.clone(),
                        }
                    }
                };
                ANSWERS.put(tx, idempotency_key, &Answer::Refund(outcome.clone()))?;
                Answer::Refund(outcome)
            }
        };
        Ok(Ok(answer))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::platform::engine::CommandContext;
    use crate::platform::{Engine, Store};
    use std::path::Path;
    use std::sync::Arc;

    fn engine(dir: &Path) -> Arc<Engine<ProviderLedger>> {
        let store = Arc::new(Store::open(&dir.join("ledger")).unwrap());
        crate::platform::testing::leaked(dir, store, ProviderLedger)
    }

    fn usd(amount: i64) -> Money {
        Money {
            amount,
            currency: "USD".to_string(),
        }
    }

    /// A charge as one node's provider adapter would submit it: its own fresh charge id.
    fn charge(key: &str, charge_id: &str, card: &str) -> LedgerCommand {
        LedgerCommand::Charge {
            idempotency_key: key.to_string(),
            charge_id: charge_id.to_string(),
            amount: usd(1999),
            card_number: card.to_string(),
            reference: "order-1".to_string(),
        }
    }

    fn submit(engine: &Engine<ProviderLedger>, command: LedgerCommand) -> Answer {
        engine
            .submit_blocking(command, CommandContext::default())
            .unwrap()
            .unwrap()
    }

    fn books(engine: &Engine<ProviderLedger>) -> Vec<LedgerCharge> {
        CHARGES.scan(engine.store().as_ref()).unwrap()
    }

    #[test]
    fn a_repeated_charge_key_answers_the_first_outcome_and_books_one_charge() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = engine(dir.path());
        let first = submit(&ledger, charge("k1", "ch_a", "4242424242424242"));
        assert_eq!(
            first,
            Answer::Charge(ChargeOutcome::Captured {
                charge_id: "ch_a".to_string()
            })
        );
        // Asked again (say through another node, which picked another charge id).
        let again = submit(&ledger, charge("k1", "ch_b", "4242424242424242"));
        assert_eq!(again, first);
        let booked = books(&ledger);
        assert_eq!(booked.len(), 1);
        assert_eq!(booked[0].charge_id, "ch_a");
        assert_eq!(booked[0].card_last4, "4242");

        // A declined card is answered the same way every time and books nothing.
        let declined = submit(&ledger, charge("k2", "ch_c", "4000000000009995"));
        assert_eq!(
            declined,
            Answer::Charge(ChargeOutcome::Declined {
                reason: DeclineReason::InsufficientFunds
            })
        );
        assert_eq!(
            submit(&ledger, charge("k2", "ch_d", "4242424242424242")),
            declined
        );
        assert_eq!(books(&ledger).len(), 1);
    }

    /// Applies one log entry (command + the meta fixed when it was logged) as every replica
    /// does, and commits it at `index`.
    fn apply_entry(
        store: &Store,
        index: u64,
        command: &LedgerCommand,
        meta: &CommandMeta,
    ) -> Answer {
        let mut tx = store.begin();
        let answer = ProviderLedger
            .apply(&mut tx, command, meta)
            .unwrap()
            .unwrap();
        store
            .commit(
                std::mem::take(&mut tx.writes),
                Vec::new(),
                None,
                crate::platform::store::Position::Raft(index),
            )
            .unwrap();
        answer
    }

    #[test]
    fn replicas_applying_the_same_commands_keep_the_same_books() {
        let refund = |key: &str, refund_id: &str, amount: i64| LedgerCommand::Refund {
            idempotency_key: key.to_string(),
            refund_id: refund_id.to_string(),
            charge_id: "ch_a".to_string(),
            amount: usd(amount),
        };
        let commands = [
            charge("k1", "ch_a", "4242424242424242"),
            refund("r1", "re_1", 999),
            refund("r1", "re_2", 999),
            refund("r2", "re_3", 1001),
            refund("r3", "re_4", 1000),
        ];
        let log: Vec<(CommandMeta, LedgerCommand)> = commands
            .into_iter()
            .enumerate()
            .map(|(index, command)| {
                let meta = CommandMeta {
                    command_id: format!("command-{index}"),
                    at_ms: 1_700_000_000_000 + i64::try_from(index).unwrap(),
                    correlation_id: "test".to_string(),
                    causation_id: None,
                    traceparent: None,
                    consumed_event: None,
                };
                (meta, command)
            })
            .collect();
        let replay = |store: &Store| -> Vec<Answer> {
            log.iter()
                .zip(1..)
                .map(|((meta, command), index)| apply_entry(store, index, command, meta))
                .collect()
        };
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (
            Store::open(dir_a.path()).unwrap(),
            Store::open(dir_b.path()).unwrap(),
        );
        let answers = replay(&a);
        assert_eq!(replay(&b), answers);
        assert_eq!(answers[2], answers[1], "a refund key is answered once");
        assert_eq!(
            answers[3],
            Answer::Refund(RefundOutcome::Refused {
                reason: "amount_exceeds_charge".to_string()
            })
        );
        let books = |store: &Store| serde_json::to_value(CHARGES.scan(store).unwrap()).unwrap();
        assert_eq!(books(&a), books(&b));
        assert_eq!(books(&a)[0]["refunded"], 1999);
        assert_eq!(books(&a)[0]["at_ms"], 1_700_000_000_000_i64);
    }
}
