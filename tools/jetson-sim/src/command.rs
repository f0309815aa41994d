//! [`Commands`]: what the boats do with the commands they receive and what they answer. Pure
//! decisions, no I/O: the run task ([`crate::publish`]) hands each message from a boat's
//! command topic to [`Commands::handle`] and publishes the answer it returns on the boat's ack
//! topic. The payloads are `seano_wire`'s [`CommandMessage`] and [`AckMessage`].
//!
//! In order, a command is: ignored by a silent boat (`--silent-boats`); answered again, with
//! the same outcome and without being carried out again, if its request_id was answered
//! already (a QoS 1 redelivery); refused if it cannot be read, has expired (`expires_at` is
//! past) or is not one of SEANO's commands; failed on purpose for a fraction `--fail-ratio`;
//! else carried out by the boat, which may still refuse it (ARM on a low battery).

use std::collections::{HashMap, VecDeque};
use std::ops::Range;

use chrono::{DateTime, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use seano_wire::command::{AckMessage, CommandMessage};
use seano_wire::{format_time, parse_timestamp};
use serde_json::Value;

use crate::boat::{Action, Boat, Mode};
use crate::config::SimConfig;

/// How many answered request_ids each boat remembers, to recognise a redelivery.
pub(crate) const REMEMBERED_PER_BOAT: usize = 256;
/// The message of a `--fail-ratio` failure.
pub(crate) const SIMULATED_FAILURE: &str = "simulated failure";
/// The ChaCha stream of the `--fail-ratio` draws: apart from every boat's and the bad draws'.
const FAIL_STREAM: u64 = u64::MAX - 1;

/// What each of SEANO's commands asks of a boat.
pub(crate) fn action(command: &str) -> Option<Action> {
    Some(match command {
        "ARM" => Action::Arm { force: false },
        "FORCE_ARM" => Action::Arm { force: true },
        "DISARM" => Action::Disarm { force: false },
        "FORCE_DISARM" => Action::Disarm { force: true },
        "AUTO" => Action::SetMode(Mode::Auto),
        "MANUAL" => Action::SetMode(Mode::Manual),
        "HOLD" => Action::SetMode(Mode::Hold),
        "LOITER" => Action::SetMode(Mode::Loiter),
        "RTL" => Action::SetMode(Mode::Rtl),
        _ => return None,
    })
}

/// What to do with one message from a command topic.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Reply {
    /// Publish this on the boat's ack topic.
    Answer(AckMessage),
    /// Publish this on the boat's ack topic: the answer given before to the same request_id.
    Repeat(AckMessage),
    /// Publish nothing.
    Ignore,
}

/// The fleet's command handling: the fail draws, the silent boats and each boat's memory of
/// the request_ids it answered. Owned by the run task.
pub(crate) struct Commands {
    fail_ratio: f64,
    rng: ChaCha8Rng,
    silent: Range<i64>,
    answered: HashMap<i64, Answered>,
}

/// One boat's recent answers, by request_id, oldest first; at most [`REMEMBERED_PER_BOAT`].
#[derive(Default)]
struct Answered {
    order: VecDeque<String>,
    by_id: HashMap<String, AckMessage>,
}

impl Commands {
    /// The `--fail-ratio` draws are seeded by `seed`, so a run with `--seed` fails the same
    /// commands when it receives the same ones in the same order.
    pub(crate) fn new(config: &SimConfig, seed: u64) -> Commands {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(FAIL_STREAM);
        let first_silent = config.start_id + i64::from(config.silent_boats);
        Commands {
            fail_ratio: config.fail_ratio,
            rng,
            silent: config.start_id..first_silent,
            answered: HashMap::new(),
        }
    }

    /// Whether a boat never answers (one of the first `--silent-boats`).
    pub(crate) fn is_silent(&self, vehicle_id: i64) -> bool {
        self.silent.contains(&vehicle_id)
    }

    /// Decides what `boat` does with `payload`, received from its command topic at `now`,
    /// and carries it out. The answer's timestamp is `now`.
    pub(crate) fn handle(&mut self, boat: &mut Boat, payload: &[u8], now: DateTime<Utc>) -> Reply {
        let vehicle_id = boat.id;
        if self.is_silent(vehicle_id) {
            log::debug!("vehicle {vehicle_id}: command ignored (silent boat)");
            return Reply::Ignore;
        }
        let command: CommandMessage = match serde_json::from_slice(payload) {
            Ok(command) => command,
            Err(e) => return unreadable(vehicle_id, payload, &e.to_string(), now),
        };
        let remembered = self.answered.entry(vehicle_id).or_default();
        if let Some(ack) = remembered.by_id.get(&command.request_id) {
            log::info!(
                "vehicle {vehicle_id}: {} {} again, answered again as {}",
                command.command,
                command.request_id,
                ack.status
            );
            return Reply::Repeat(AckMessage {
                timestamp: Some(format_time(now)),
                ..ack.clone()
            });
        }
        // Drawn for every new command, so the draws depend on the command count only.
        let fails = self.rng.random::<f64>() < self.fail_ratio;
        let outcome = decide(boat, &command, fails, now);
        let ack = AckMessage {
            request_id: command.request_id.clone(),
            command: Some(command.command.clone()),
            status: if outcome.is_ok() { "ok" } else { "error" }.to_owned(),
            message: Some(outcome.unwrap_or_else(|reason| reason)),
            timestamp: Some(format_time(now)),
        };
        log::info!(
            "vehicle {vehicle_id}: {} {}: {} ({})",
            command.command,
            command.request_id,
            ack.status,
            ack.message.as_deref().unwrap_or_default()
        );
        remembered.remember(ack.clone());
        Reply::Answer(ack)
    }

    /// Whether `vehicle_id` has answered `request_id` (and still remembers it).
    #[cfg(test)]
    pub(crate) fn answered(&self, vehicle_id: i64, request_id: &str) -> bool {
        self.answered
            .get(&vehicle_id)
            .is_some_and(|a| a.by_id.contains_key(request_id))
    }
}

impl Answered {
    fn remember(&mut self, ack: AckMessage) {
        if self.order.len() == REMEMBERED_PER_BOAT {
            if let Some(oldest) = self.order.pop_front() {
                self.by_id.remove(&oldest);
            }
        }
        self.order.push_back(ack.request_id.clone());
        self.by_id.insert(ack.request_id.clone(), ack);
    }
}

/// The outcome of a new command: the boat's confirmation, or the reason it was not carried out.
fn decide(
    boat: &mut Boat,
    command: &CommandMessage,
    fails: bool,
    now: DateTime<Utc>,
) -> Result<String, String> {
    if let Some(expires_at) = &command.expires_at {
        let deadline = parse_timestamp(expires_at)
            .ok_or_else(|| format!("expires_at '{expires_at}' is not an RFC 3339 time"))?;
        if deadline < now {
            return Err(format!(
                "expired at {}, received at {}",
                format_time(deadline),
                format_time(now)
            ));
        }
    }
    let action =
        action(&command.command).ok_or_else(|| format!("unknown command {}", command.command))?;
    if fails {
        return Err(SIMULATED_FAILURE.to_owned());
    }
    boat.obey(action)
}

/// A payload that is not a command: answered `error` if a request_id can be read from it,
/// else only logged.
fn unreadable(vehicle_id: i64, payload: &[u8], error: &str, now: DateTime<Utc>) -> Reply {
    let value: Option<Value> = serde_json::from_slice(payload).ok();
    let text = |name: &str| {
        value
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    match text("request_id") {
        Some(request_id) => {
            log::warn!("vehicle {vehicle_id}: unreadable command {request_id}: {error}");
            Reply::Answer(AckMessage {
                request_id,
                command: text("command"),
                status: "error".to_owned(),
                message: Some(format!("invalid command: {error}")),
                timestamp: Some(format_time(now)),
            })
        }
        None => {
            log::warn!(
                "vehicle {vehicle_id}: ignored a command without a readable request_id ({error}): {}",
                String::from_utf8_lossy(&payload[..payload.len().min(200)])
            );
            Reply::Ignore
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boat::{VehicleNoise, LOW_BATTERY_PREARM};
    use crate::config::GeoPoint;
    use chrono::TimeZone;
    use seano_wire::command::SEANO_COMMANDS;
    use seano_wire::VehicleState;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 6, 8, 15, 2).unwrap()
    }

    fn commands(fail_ratio: f64, silent_boats: u32) -> Commands {
        let config = SimConfig {
            vehicles: 3,
            start_id: 7,
            fail_ratio,
            silent_boats,
            ..SimConfig::default()
        };
        config.validate().unwrap();
        Commands::new(&config, 42)
    }

    /// Boat 8 (the second of the fleet), armed in AUTO a few seconds after boot.
    fn boat() -> Boat {
        let home = GeoPoint {
            lat: -6.2088,
            lon: 106.8456,
        };
        let mut boat = Boat::new(8, ChaCha8Rng::seed_from_u64(3), home, 500.0);
        boat.advance(5.0);
        boat
    }

    fn state(boat: &Boat) -> VehicleState {
        boat.vehicle_state(&VehicleNoise::draw(&mut ChaCha8Rng::seed_from_u64(1)))
    }

    fn send(commands: &mut Commands, boat: &mut Boat, payload: &str) -> Reply {
        commands.handle(boat, payload.as_bytes(), now())
    }

    fn answer(reply: Reply) -> AckMessage {
        match reply {
            Reply::Answer(ack) | Reply::Repeat(ack) => ack,
            Reply::Ignore => panic!("the boat did not answer"),
        }
    }

    fn command(request_id: &str, name: &str) -> String {
        format!(r#"{{"request_id":"{request_id}","command":"{name}"}}"#)
    }

    #[test]
    fn every_seano_command_is_known() {
        for name in SEANO_COMMANDS {
            assert!(action(name).is_some(), "{name}");
        }
    }

    #[test]
    fn each_command_changes_what_the_next_vehicle_log_shows() {
        let mut c = commands(0.0, 0);
        for (i, (name, armed, mode, message)) in [
            ("DISARM", false, "AUTO", "Disarmed"),
            ("ARM", true, "AUTO", "Armed"),
            ("FORCE_DISARM", false, "AUTO", "Disarmed"),
            ("FORCE_ARM", true, "AUTO", "Armed"),
            ("MANUAL", true, "MANUAL", "Mode MANUAL"),
            ("HOLD", true, "HOLD", "Mode HOLD"),
            ("LOITER", true, "LOITER", "Mode LOITER"),
            ("AUTO", true, "AUTO", "Mode AUTO"),
            ("RTL", true, "RTL", "Returning to launch"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut b = boat();
            assert_eq!(state(&b).armed, Some(true));
            if armed && name.ends_with("ARM") {
                b.obey(Action::Disarm { force: false }).unwrap();
            }
            let ack = answer(send(&mut c, &mut b, &command(&format!("r{i}"), name)));
            assert_eq!(
                (ack.status.as_str(), ack.message.as_deref()),
                ("ok", Some(message)),
                "{name}"
            );
            assert_eq!(ack.command.as_deref(), Some(name));
            assert_eq!(ack.request_id, format!("r{i}"));
            assert_eq!(ack.timestamp.as_deref(), Some("2026-05-06T08:15:02.000Z"));
            b.advance(5.2);
            let s = state(&b);
            assert_eq!(s.armed, Some(armed), "{name}");
            assert_eq!(s.mode.as_deref(), Some(mode), "{name}");
        }
    }

    #[test]
    fn the_answers_decode_as_the_gateway_reads_them() {
        let mut c = commands(0.0, 0);
        let ack = answer(send(&mut c, &mut boat(), &command("a-1", "RTL")));
        let decoded = seano_wire::command::decode_ack(&serde_json::to_string(&ack).unwrap())
            .expect("the gateway accepts the answer");
        assert_eq!(decoded.outcome, seano_wire::CommandState::Succeeded);
    }

    #[test]
    fn arm_is_refused_on_a_low_battery_and_force_arm_skips_the_check() {
        let mut c = commands(0.0, 0);
        let mut b = boat();
        b.obey(Action::Disarm { force: false }).unwrap();
        b.set_charge(0.1);
        let ack = answer(send(&mut c, &mut b, &command("a1", "ARM")));
        assert_eq!(ack.status, "error");
        assert_eq!(ack.message.as_deref(), Some(LOW_BATTERY_PREARM));
        assert_eq!(state(&b).armed, Some(false));
        let ack = answer(send(&mut c, &mut b, &command("a2", "FORCE_ARM")));
        assert_eq!(ack.status, "ok");
        assert_eq!(state(&b).armed, Some(true));
    }

    #[test]
    fn an_expired_command_is_refused_and_not_carried_out() {
        let mut c = commands(0.0, 0);
        let mut b = boat();
        let late =
            r#"{"request_id":"e1","command":"HOLD","expires_at":"2026-05-06T08:15:01.999Z"}"#;
        let ack = answer(send(&mut c, &mut b, late));
        assert_eq!(ack.status, "error");
        assert!(
            ack.message.as_deref().unwrap().starts_with("expired"),
            "{ack:?}"
        );
        assert_eq!(state(&b).mode.as_deref(), Some("AUTO"));
        let in_time = r#"{"request_id":"e2","command":"HOLD","expires_at":"2026-05-06T08:15:10Z"}"#;
        assert_eq!(answer(send(&mut c, &mut b, in_time)).status, "ok");
        assert_eq!(state(&b).mode.as_deref(), Some("HOLD"));
    }

    #[test]
    fn an_unknown_command_is_refused_by_name() {
        let mut c = commands(0.0, 0);
        let mut b = boat();
        let ack = answer(send(&mut c, &mut b, &command("u1", "SELF_DESTRUCT")));
        assert_eq!(ack.status, "error");
        assert_eq!(
            ack.message.as_deref(),
            Some("unknown command SELF_DESTRUCT")
        );
    }

    #[test]
    fn an_unreadable_command_is_answered_only_when_it_has_a_request_id() {
        let mut c = commands(0.0, 0);
        let mut b = boat();
        let ack = answer(send(&mut c, &mut b, r#"{"request_id":"x1","command":7}"#));
        assert_eq!(ack.status, "error");
        assert!(ack.message.unwrap().starts_with("invalid command"));
        assert_eq!(send(&mut c, &mut b, "RTL please"), Reply::Ignore);
        assert_eq!(send(&mut c, &mut b, r#"{"command":"RTL"}"#), Reply::Ignore);
        assert_eq!(state(&b).mode.as_deref(), Some("AUTO"));
    }

    #[test]
    fn fail_ratio_one_fails_every_command_and_zero_none() {
        let mut always = commands(1.0, 0);
        let mut never = commands(0.0, 0);
        for i in 0..50 {
            let mut b = boat();
            let ack = answer(send(
                &mut always,
                &mut b,
                &command(&format!("f{i}"), "HOLD"),
            ));
            assert_eq!(
                (ack.status.as_str(), ack.message.as_deref()),
                ("error", Some(SIMULATED_FAILURE))
            );
            assert_eq!(state(&b).mode.as_deref(), Some("AUTO"), "not carried out");
            let ack = answer(send(&mut never, &mut b, &command(&format!("f{i}"), "HOLD")));
            assert_eq!(ack.status, "ok");
        }
    }

    #[test]
    fn fail_ratio_fails_about_that_fraction_reproducibly() {
        let outcomes = || {
            let mut c = commands(0.3, 0);
            let mut b = boat();
            (0..1000)
                .map(|i| answer(send(&mut c, &mut b, &command(&format!("p{i}"), "AUTO"))).status)
                .collect::<Vec<_>>()
        };
        let first = outcomes();
        let failed = first.iter().filter(|s| *s == "error").count();
        assert!((250..350).contains(&failed), "{failed}");
        assert_eq!(first, outcomes(), "the same seed fails the same commands");
    }

    #[test]
    fn silent_boats_neither_answer_nor_obey() {
        let mut c = commands(0.0, 2);
        let home = GeoPoint {
            lat: -6.2088,
            lon: 106.8456,
        };
        assert!(c.is_silent(7) && c.is_silent(8) && !c.is_silent(9));
        let mut silent = boat();
        assert_eq!(
            send(&mut c, &mut silent, &command("s1", "RTL")),
            Reply::Ignore
        );
        assert_eq!(state(&silent).mode.as_deref(), Some("AUTO"));
        let mut talking = Boat::new(9, ChaCha8Rng::seed_from_u64(3), home, 500.0);
        assert_eq!(
            answer(send(&mut c, &mut talking, &command("s2", "RTL"))).status,
            "ok"
        );
    }

    #[test]
    fn a_redelivered_command_is_answered_the_same_and_carried_out_once() {
        let mut c = commands(0.0, 0);
        let mut b = boat();
        let first = answer(send(&mut c, &mut b, &command("d1", "HOLD")));
        // The operator moves on; a late redelivery of d1 must not bring HOLD back.
        answer(send(&mut c, &mut b, &command("d2", "AUTO")));
        let again = send(&mut c, &mut b, &command("d1", "HOLD"));
        assert_eq!(again, Reply::Repeat(first));
        assert_eq!(state(&b).mode.as_deref(), Some("AUTO"));

        // A refusal is repeated too, even once the reason is gone.
        b.obey(Action::Disarm { force: false }).unwrap();
        b.set_charge(0.1);
        let refused = answer(send(&mut c, &mut b, &command("d3", "ARM")));
        b.set_charge(0.9);
        assert_eq!(answer(send(&mut c, &mut b, &command("d3", "ARM"))), refused);
        assert_eq!(state(&b).armed, Some(false));
    }

    #[test]
    fn each_boat_remembers_a_bounded_number_of_request_ids() {
        let mut c = commands(0.0, 0);
        let mut b = boat();
        for i in 0..=REMEMBERED_PER_BOAT {
            answer(send(&mut c, &mut b, &command(&format!("m{i}"), "AUTO")));
        }
        assert!(!c.answered(8, "m0"), "the oldest is forgotten");
        assert!(c.answered(8, "m1") && c.answered(8, &format!("m{REMEMBERED_PER_BOAT}")));
        assert!(!c.answered(9, "m1"), "per boat");
    }
}
