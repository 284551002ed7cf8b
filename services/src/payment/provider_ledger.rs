//! The built-in test provider's books as a state machine of their own.
//!
//! The test provider stands for an outside PSP that every node talks to: whichever node
//! charges, the books are one, and a key asked again (on any node) answers its first answer
//! without moving money twice. So the books are not a node's file but a deterministic state
//! machine over its own command log (its own store, `<data-dir>/services/payment-provider`),
//! which a cluster replicates like any service's.
//!
//! The charge and refund ids are made before the command is logged and the time is the
//! command's; apply remembers each idempotency key's answer, so replicas applying the same
//! commands keep the same books.
//!
//! The books hold no card number: a card is charged by the token its tokenization recorded
//! in the vault ([`super::card_vault`]), where the test-card convention's decision ([`decide`])
//! was made while the number was at hand.

use super::card_vault::{FingerprintKey, VaultedCard};
use super::model::{ChargeOutcome, DeclineReason, RefundOutcome};
use crate::platform::card::CardNumber;
use crate::platform::store::{Table, Transaction};
use crate::platform::{CommandMeta, Money, Rejection, StateMachine, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One real charge in the test provider's books, by charge id.
pub const CHARGES: Table<LedgerCharge> = Table::new("charge");
/// What the provider answered to each idempotency key, so that the key answers the same
/// forever.
pub const ANSWERS: Table<Answer> = Table::new("answer");
/// token -> the card it stands for.
pub const VAULT: Table<VaultedCard> = Table::new("vault");
/// The card fingerprint key: one record, under [`FINGERPRINT_KEY_ID`].
pub const FINGERPRINT_KEY: Table<FingerprintKey> = Table::new("fingerprint_key");
pub const FINGERPRINT_KEY_ID: &str = "current";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LedgerCommand {
    /// Charge a card unless this idempotency key was answered before.
    Charge {
        idempotency_key: String,
        /// The id the charge gets if it is captured.
        charge_id: String,
        amount: Money,
        /// The vaulted card's token; empty in a command logged before cards were tokenized
        /// (its `card_number` is ignored and the charge declined as an invalid card).
        #[serde(default)]
        payment_token: String,
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
    /// Keep a tokenized card under `token` (made before the command was logged).
    Vault { token: String, card: VaultedCard },
    /// Install the card fingerprint key unless one is installed (the first offered wins).
    InstallFingerprintKey { key: FingerprintKey },
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
    /// `Vault` and `InstallFingerprintKey`: recorded.
    Recorded,
}

/// The decision the test-card convention makes for a card number (any other valid number
/// succeeds, as with Stripe's test mode).
pub fn decide(card: &CardNumber) -> Result<(), DeclineReason> {
    match card.digits() {
        "4000000000000002" => Err(DeclineReason::CardDeclined),
        "4000000000009995" => Err(DeclineReason::InsufficientFunds),
        _ => Ok(()),
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
                payment_token,
                reference,
            } => {
                if let Some(answer @ Answer::Charge(_)) = ANSWERS.get(tx, idempotency_key)? {
                    return Ok(Ok(answer));
                }
                let card = VAULT.get(tx, payment_token)?;
                let decision = match &card {
                    // A token this provider never issued.
                    None => Err(DeclineReason::InvalidCard),
                    Some(card) => card.decline.map_or(Ok(()), Err),
                };
                let outcome = match decision {
                    Ok(()) => {
                        let charge = LedgerCharge {
                            charge_id: charge_id.clone(),
                            idempotency_key: idempotency_key.clone(),
                            order_id: reference.clone(),
                            amount: amount.clone(),
                            card_last4: card.map(|card| card.last4).unwrap_or_default(),
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
            LedgerCommand::Vault { token, card } => {
                VAULT.put(tx, token, card)?;
                Answer::Recorded
            }
            LedgerCommand::InstallFingerprintKey { key } => {
                if FINGERPRINT_KEY.get(tx, FINGERPRINT_KEY_ID)?.is_none() {
                    FINGERPRINT_KEY.put(tx, FINGERPRINT_KEY_ID, key)?;
                }
                Answer::Recorded
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

    /// A charge as one node's provider adapter would submit it: its own fresh charge id, the
    /// card by the token [`vault`] kept it under.
    fn charge(key: &str, charge_id: &str, card: &str) -> LedgerCommand {
        LedgerCommand::Charge {
            idempotency_key: key.to_string(),
            charge_id: charge_id.to_string(),
            amount: usd(1999),
            payment_token: format!("tok_{}", &card[12..]),
            reference: "order-1".to_string(),
        }
    }

    /// Tokenization of a test card, as the edge submits it (the token named after the last
    /// four digits, to read well here).
    fn vault(card: &str) -> LedgerCommand {
        let number = CardNumber::parse(card).unwrap();
        LedgerCommand::Vault {
            token: format!("tok_{}", number.last4()),
            card: VaultedCard {
                brand: number.brand(),
                last4: number.last4(),
                fingerprint: "f".repeat(64),
                decline: decide(&number).err(),
            },
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
        for card in ["4242424242424242", "4000000000009995"] {
            assert_eq!(submit(&ledger, vault(card)), Answer::Recorded);
        }
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

        // A token the provider never issued charges nothing.
        assert_eq!(
            submit(&ledger, charge("k3", "ch_e", "4111111111111111")),
            Answer::Charge(ChargeOutcome::Declined {
                reason: DeclineReason::InvalidCard
            })
        );
        assert_eq!(books(&ledger).len(), 1);
    }

    #[test]
    fn the_test_cards_decide_as_documented() {
        let decision = |card: &str| decide(&CardNumber::parse(card).unwrap());
        assert_eq!(decision("4242424242424242"), Ok(()));
        assert_eq!(decision("5555555555554444"), Ok(()));
        assert_eq!(
            decision("4000000000000002"),
            Err(DeclineReason::CardDeclined)
        );
        assert_eq!(
            decision("4000000000009995"),
            Err(DeclineReason::InsufficientFunds)
        );
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
            vault("4242424242424242"),
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
        assert_eq!(answers[3], answers[2], "a refund key is answered once");
        assert_eq!(
            answers[4],
            Answer::Refund(RefundOutcome::Refused {
                reason: "amount_exceeds_charge".to_string()
            })
        );
        let books = |store: &Store| serde_json::to_value(CHARGES.scan(store).unwrap()).unwrap();
        assert_eq!(books(&a), books(&b));
        assert_eq!(books(&a)[0]["refunded"], 1999);
        assert_eq!(books(&a)[0]["at_ms"], 1_700_000_000_001_i64);
    }
}
