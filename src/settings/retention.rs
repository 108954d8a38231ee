//! The `RETAIN_*` settings: how long history is kept (`jobs::retention::Retention`).

use std::time::Duration;

use anyhow::{Result, bail};

use super::Settings;

impl Settings {
    /// How long history is kept: each `RETAIN_*` is a number of days (`30d`) or hours (`12h`),
    /// or `forever`.
    pub fn retention(&self) -> Result<jobs::retention::Retention> {
        let r = jobs::retention::Retention {
            done_jobs: retention("RETAIN_DONE_JOBS", &self.retain_done_jobs)?,
            dead_jobs: retention("RETAIN_DEAD_JOBS", &self.retain_dead_jobs)?,
            job_runs: retention("RETAIN_JOB_RUNS", &self.retain_job_runs)?,
            snapshots: retention("RETAIN_SNAPSHOTS", &self.retain_snapshots)?,
            daily_snapshots: retention("RETAIN_DAILY_SNAPSHOTS", &self.retain_daily_snapshots)?,
            notifications: retention("RETAIN_NOTIFICATIONS", &self.retain_notifications)?,
            cron_runs: retention("RETAIN_CRON_RUNS", &self.retain_cron_runs)?,
            workers: retention("RETAIN_WORKERS", &self.retain_workers)?,
            audit: retention("RETAIN_AUDIT", &self.retain_audit)?,
        };
        // Daily snapshots are what is left after the full ones: shorter would make no sense.
        if let (Some(all), Some(daily)) = (r.snapshots, r.daily_snapshots)
            && daily < all
        {
            bail!("RETAIN_DAILY_SNAPSHOTS is shorter than RETAIN_SNAPSHOTS: the daily snapshots are kept after the full ones, so it must be at least as long");
        }
        if r.snapshots.is_none() && r.daily_snapshots.is_some() {
            bail!("RETAIN_DAILY_SNAPSHOTS is set while RETAIN_SNAPSHOTS is forever: set it to forever too, or give RETAIN_SNAPSHOTS a length");
        }
        Ok(r)
    }
}

/// `30d`, `12h` or `forever`.
fn retention(name: &str, text: &str) -> Result<Option<Duration>> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("forever") {
        return Ok(None);
    }
    let unit = match text.chars().last() {
        Some('d') => 86_400,
        Some('h') => 3_600,
        _ => 0,
    };
    match text[..text.len().saturating_sub(1)].parse::<u64>() {
        Ok(n) if unit > 0 && n > 0 => Ok(Some(Duration::from_secs(n * unit))),
        _ => bail!("{name} is malformed: expected days such as 30d, hours such as 12h, or forever, got {text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_days_hours_or_forever() {
        assert_eq!(retention("X", "30d").unwrap(), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(retention("X", "12h").unwrap(), Some(Duration::from_secs(12 * 3_600)));
        assert_eq!(retention("X", "forever").unwrap(), None);
        for bad in ["", "0d", "30", "d", "3w", "-1d"] {
            let err = retention("RETAIN_JOB_RUNS", bad).unwrap_err().to_string();
            assert!(err.starts_with("RETAIN_JOB_RUNS is malformed"), "{bad:?}: {err}");
        }
        let defaults = Settings::default().retention().unwrap();
        assert_eq!(defaults, jobs::retention::Retention::default(), "the documented defaults are the library's");
        let shorter = Settings { retain_daily_snapshots: "7d".into(), ..Settings::default() };
        assert!(shorter.retention().is_err());
    }
}
