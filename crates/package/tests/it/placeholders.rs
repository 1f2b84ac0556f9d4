//! Random placeholders: Cerb's alphabet and default length, drawn from the injected generator;
//! re-planning gives new ids and new values.

use pretty_assertions::assert_eq;
use rand::RngCore;
use serde_json::json;
use switchboard_package::{Package, PlanOptions, RANDOM_ALPHABET};

use crate::support::*;

fn package_with_placeholders() -> Package {
    let mut doc = minimal(json!({}));
    doc["package"]["configure"] = json!({"placeholders": [
        {"type": "random", "key": "short"},
        {"type": "random", "key": "long", "params": {"length": 40}},
        {"type": "random", "key": "zero", "params": {"length": 0}}
    ]});
    doc["bots"][0]["params"]["config"] =
        json!({"short": "{{{short}}}", "long": "{{{long}}}", "zero": "{{{zero}}}"});
    Package::parse(&doc.to_string()).unwrap()
}

#[test]
fn default_length_is_8_and_alphabet_is_cerbs() {
    let pkg = package_with_placeholders();
    for seed in 0..20 {
        let plan = plan_seeded(&pkg, &answers(json!({})), 1, seed).unwrap();
        let config = plan.bots[0].config();
        let lengths: Vec<usize> = ["short", "long", "zero"]
            .iter()
            .map(|k| config[k].as_str().unwrap().len())
            .collect();
        assert_eq!(lengths, vec![8, 40, 8]);
        for key in ["short", "long", "zero"] {
            let value = config[key].as_str().unwrap();
            assert!(
                value.bytes().all(|b| RANDOM_ALPHABET.contains(&b)),
                "{value}"
            );
            assert!(!value.contains(['I', 'O', '0']), "{value}");
        }
    }
}

#[test]
fn seeded_generator_is_reproducible_and_seeds_differ() {
    let pkg = Package::parse(&seed_json()).unwrap();
    let a = plan_seeded(&pkg, &seed_answers(), 1, 99).unwrap();
    let b = plan_seeded(&pkg, &seed_answers(), 1, 99).unwrap();
    let c = plan_seeded(&pkg, &seed_answers(), 1, 100).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.webhooks[0].guid, c.webhooks[0].guid);
}

/// A generator that always yields zero bits: every draw picks the alphabet's first letter.
/// (It claims to be cryptographic only so that the plan accepts it.)
struct Zeros(usize);

impl rand::CryptoRng for Zeros {}

impl RngCore for Zeros {
    fn next_u32(&mut self) -> u32 {
        self.0 += 1;
        0
    }
    fn next_u64(&mut self) -> u64 {
        self.0 += 1;
        0
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0 += 1;
        dst.fill(0);
    }
}

#[test]
fn placeholders_come_from_the_injected_generator() {
    let pkg = Package::parse(&seed_json()).unwrap();
    let mut rng = Zeros(0);
    let mut next = 0;
    let mut next_id = || {
        next += 1;
        next
    };
    let plan = pkg
        .plan(PlanOptions {
            answers: &seed_answers(),
            next_id: &mut next_id,
            rng: &mut rng,
            defaults: json!({}),
        })
        .unwrap();
    assert_eq!(plan.webhooks[0].guid, "a".repeat(40));
    assert!(
        rng.0 >= 40,
        "one draw per character at least, got {}",
        rng.0
    );
}

#[test]
fn replanning_gives_new_ids_and_new_placeholders() {
    let pkg = Package::parse(&seed_json()).unwrap();
    let mut rng = rand::rng();
    let mut next = 1000;
    let mut next_id = || {
        next += 1;
        next
    };
    let answers = seed_answers();
    let first = pkg
        .plan(PlanOptions {
            answers: &answers,
            next_id: &mut next_id,
            rng: &mut rng,
            defaults: json!({}),
        })
        .unwrap();
    let second = pkg
        .plan(PlanOptions {
            answers: &answers,
            next_id: &mut next_id,
            rng: &mut rng,
            defaults: json!({}),
        })
        .unwrap();
    let ids =
        |p: &switchboard_package::ImportPlan| p.records.iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(&first), vec![1001, 1002, 1003, 1004, 1005]);
    assert_eq!(ids(&second), vec![1017, 1018, 1019, 1020, 1021]);
    assert_ne!(first.webhooks[0].guid, second.webhooks[0].guid);
    assert_eq!(second.webhooks[0].behavior_id, Some(1020));
}
