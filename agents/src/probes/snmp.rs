//! SNMP polling of the network devices a link runs through (issue 18): for each `[[snmp]]` in
//! the agent's config, the interface's IF-MIB status and counters every interval, with
//! `async-snmp` (v2c and v3 USM), turned into rates between two polls. The reports go to the
//! controllers with every heartbeat; the leader counts an interface the device says is down, or
//! one past its utilisation or error thresholds, against the link.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_snmp::{Auth, AuthProtocol, Client, Oid, PrivProtocol, Retry, UsmConfig, Value};
use triad_proto::v1::SnmpReport;

use crate::config::SnmpDevice;

/// IF-MIB columns, without the interface index.
const IF_OPER_STATUS: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 8];
const IF_IN_ERRORS: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 14];
const IF_DESCR: &[u32] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2];
const IF_NAME: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1];
const IF_HC_IN_OCTETS: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6];
const IF_HC_OUT_OCTETS: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 10];
const IF_HIGH_SPEED: &[u32] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 15];
/// How long one request may take (with one retry).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Rates are reckoned over at least this long: agents cache their counters for a few seconds
/// (net-snmp's interface table, 3 s), so two polls a second apart often read the same values.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// What one poll read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: Instant,
    pub oper_up: bool,
    pub in_octets: u64,
    pub out_octets: u64,
    pub in_errors: u64,
    /// ifHighSpeed in Mb/s (0: unknown).
    pub speed_mbps: u64,
}

/// Rates between two polls: (in bits/s, out bits/s, input errors/s); `None` when a counter went
/// backwards (the device restarted, or the counter was reset) or no time passed.
pub fn rates(before: &Sample, now: &Sample) -> Option<(f64, f64, f64)> {
    let secs = now.at.checked_duration_since(before.at)?.as_secs_f64();
    if secs <= 0.0 {
        return None;
    }
    let delta = |a: u64, b: u64| b.checked_sub(a).map(|d| d as f64);
    Some((
        delta(before.in_octets, now.in_octets)? * 8.0 / secs,
        delta(before.out_octets, now.out_octets)? * 8.0 / secs,
        delta(before.in_errors, now.in_errors)? / secs,
    ))
}

/// Drops the samples a rate over `window` ending at `now` no longer needs: the base kept is the
/// newest sample at least `window` old (or the oldest there is, early on).
fn trim(samples: &mut std::collections::VecDeque<Sample>, now: Instant, window: Duration) {
    while samples.len() > 1 && samples[1].at + window <= now {
        samples.pop_front();
    }
}

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("the credentials are not usable: {0}")]
    Credentials(String),
    #[error("{0}")]
    Snmp(#[from] Box<async_snmp::Error>),
    #[error("no interface named `{0}` (ifName or ifDescr) on the device")]
    NoSuchInterface(String),
    #[error("the device has no {0} for ifIndex {1}")]
    Missing(&'static str, u32),
}

/// The credentials of a device, as `async-snmp` takes them.
pub fn auth(d: &SnmpDevice) -> Result<Auth, PollError> {
    if d.version == "v2c" {
        return Ok(Auth::v2c(d.community.clone()));
    }
    let user = UsmConfig::new(d.user.clone().into_bytes());
    let bad = |e: &dyn std::fmt::Display| PollError::Credentials(e.to_string());
    let usm = match (d.auth_protocol.as_str(), d.privacy_protocol.as_str()) {
        ("", _) => user,
        (a, "") => user.auth(a.parse::<AuthProtocol>().map_err(|e| bad(&e))?, &d.auth_password).map_err(|e| bad(&e))?,
        (a, p) => user
            .auth_priv(
                a.parse::<AuthProtocol>().map_err(|e| bad(&e))?,
                &d.auth_password,
                p.parse::<PrivProtocol>().map_err(|e| bad(&e))?,
                &d.privacy_password,
            )
            .map_err(|e| bad(&e))?,
    };
    Ok(Auth::from(usm))
}

/// The latest report of every configured device.
#[derive(Default)]
pub struct Polls {
    reports: Mutex<BTreeMap<usize, (SnmpReport, Option<Instant>)>>,
}

impl Polls {
    /// Starts polling every device in `devices`, each on its own task, forever.
    pub fn start(devices: &[SnmpDevice]) -> Arc<Polls> {
        let polls = Arc::new(Polls::default());
        for (i, d) in devices.iter().enumerate() {
            let report = SnmpReport {
                link: d.link.clone(),
                target: d.target.clone(),
                if_index: d.if_index,
                error: "not polled yet".into(),
                ..Default::default()
            };
            polls.reports.lock().expect("snmp lock poisoned").insert(i, (report, None));
            tokio::spawn(poll_forever(i, d.clone(), polls.clone()));
        }
        polls
    }

    /// Every device's latest report, its age brought up to now.
    pub fn reports(&self) -> Vec<SnmpReport> {
        let map = self.reports.lock().expect("snmp lock poisoned");
        map.values()
            .map(|(r, answered)| {
                let mut r = r.clone();
                r.age_ms = answered.map_or(u64::MAX, |t| t.elapsed().as_millis() as u64);
                r
            })
            .collect()
    }

    fn update(&self, i: usize, f: impl FnOnce(&mut SnmpReport, &mut Option<Instant>)) {
        let mut map = self.reports.lock().expect("snmp lock poisoned");
        if let Some((r, answered)) = map.get_mut(&i) {
            f(r, answered);
        }
    }
}

async fn poll_forever(i: usize, d: SnmpDevice, polls: Arc<Polls>) {
    let interval = Duration::from_millis(d.interval_ms);
    let mut client: Option<Client<async_snmp::UdpHandle>> = None;
    let mut if_index = d.if_index;
    let window = RATE_WINDOW.max(interval * 2);
    let mut samples: std::collections::VecDeque<Sample> = std::collections::VecDeque::new();
    loop {
        let result = poll_once(&d, &mut client, &mut if_index).await;
        polls.update(i, |r, answered| match result {
            Ok(now) => {
                r.if_index = if_index;
                r.oper_up = now.oper_up;
                r.speed_bps = now.speed_mbps as f64 * 1e6;
                trim(&mut samples, now.at, window);
                match samples.front().and_then(|before| rates(before, &now)) {
                    Some((inb, outb, errs)) => {
                        (r.in_bps, r.out_bps, r.in_errors_per_s, r.rates) = (inb, outb, errs, true);
                    }
                    // A reset counter: rates again from the next poll.
                    None => {
                        r.rates = false;
                        samples.clear();
                    }
                }
                samples.push_back(now);
                r.error.clear();
                *answered = Some(now.at);
            }
            Err(e) => {
                r.error = e.to_string();
                if matches!(e, PollError::Snmp(_)) {
                    // Rebuilt at the next poll (a v3 engine may have restarted).
                    client = None;
                }
            }
        });
        tokio::time::sleep(interval).await;
    }
}

async fn poll_once(
    d: &SnmpDevice,
    client: &mut Option<Client<async_snmp::UdpHandle>>,
    if_index: &mut u32,
) -> Result<Sample, PollError> {
    if client.is_none() {
        let retry = Retry::fixed(1, Duration::ZERO).map_err(|e| PollError::Credentials(e.to_string()))?;
        let c = Client::builder(d.target.as_str(), auth(d)?)
            .request_timeout(REQUEST_TIMEOUT)
            .retry(retry)
            .connect()
            .await?;
        *client = Some(c);
    }
    let c = client.as_ref().expect("made above");
    if *if_index == 0 {
        *if_index = resolve(c, &d.if_name).await?;
    }
    let n = *if_index;
    let oid = |column: &[u32]| Oid::from_slice(column).child(n);
    let columns = [IF_OPER_STATUS, IF_HC_IN_OCTETS, IF_HC_OUT_OCTETS, IF_IN_ERRORS, IF_HIGH_SPEED];
    let oids: Vec<Oid> = columns.iter().map(|c| oid(c)).collect();
    let response = c.get_many(&oids).await?;
    let at = Instant::now();
    let value = |column: &[u32]| {
        let want = oid(column);
        response.varbinds.iter().find(|v| v.oid == want).map(|v| &v.value)
    };
    let number =
        |column: &[u32], what: &'static str| value(column).and_then(Value::as_u64).ok_or(PollError::Missing(what, n));
    Ok(Sample {
        at,
        oper_up: number(IF_OPER_STATUS, "ifOperStatus")? == 1,
        in_octets: number(IF_HC_IN_OCTETS, "ifHCInOctets")?,
        out_octets: number(IF_HC_OUT_OCTETS, "ifHCOutOctets")?,
        in_errors: number(IF_IN_ERRORS, "ifInErrors")?,
        speed_mbps: number(IF_HIGH_SPEED, "ifHighSpeed").unwrap_or(0),
    })
}

/// The ifIndex of the interface named `name` (ifName first, then ifDescr).
async fn resolve(c: &Client<async_snmp::UdpHandle>, name: &str) -> Result<u32, PollError> {
    for column in [IF_NAME, IF_DESCR] {
        let base = Oid::from_slice(column);
        let rows = c.walk(base.clone())?.collect().await?;
        for row in rows {
            let named = row.value.as_bytes().is_some_and(|b| b == name.as_bytes());
            if named {
                if let Some(&index) = row.oid.arcs().get(base.arcs().len()) {
                    return Ok(index);
                }
            }
        }
    }
    Err(PollError::NoSuchInterface(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, in_octets: u64, out_octets: u64, in_errors: u64) -> Sample {
        Sample { at, oper_up: true, in_octets, out_octets, in_errors, speed_mbps: 1000 }
    }

    #[test]
    fn rates_are_taken_over_the_window_from_the_newest_sample_old_enough() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut samples: std::collections::VecDeque<Sample> = (0..13).map(|s| sample(at(s), s, 0, 0)).collect();
        trim(&mut samples, at(13), Duration::from_secs(10));
        assert_eq!(samples.front().map(|s| s.in_octets), Some(3), "the newest at least 10 s old");
        let mut early: std::collections::VecDeque<Sample> = (0..3).map(|s| sample(at(s), s, 0, 0)).collect();
        trim(&mut early, at(3), Duration::from_secs(10));
        assert_eq!(early.len(), 3, "early on, the oldest there is");
    }

    #[test]
    fn rates_are_deltas_over_time_and_a_reset_counter_gives_none() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let (i, o, e) = rates(&sample(t0, 1_000, 5_000, 10), &sample(t1, 251_000, 5_000, 30)).unwrap();
        assert_eq!((i, o, e), (1_000_000.0, 0.0, 10.0));
        assert!(rates(&sample(t0, 1_000, 5_000, 10), &sample(t1, 500, 6_000, 10)).is_none(), "reset");
        assert!(rates(&sample(t1, 0, 0, 0), &sample(t0, 1, 1, 1)).is_none(), "backwards in time");
        assert!(rates(&sample(t0, 0, 0, 0), &sample(t0, 1, 1, 1)).is_none(), "no time passed");
    }
}
