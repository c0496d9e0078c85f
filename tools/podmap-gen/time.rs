//! Times and dates as the original files write them: `startHms`, transcript times, episode
//! dates.

/// `[hours, minutes, seconds]` of `sec` seconds (an episode's `duration`).
pub fn hms_parts(sec: u64) -> [u64; 3] {
    [sec / 3600, sec / 60 % 60, sec % 60]
}

/// "M:SS" below one hour, "H:MM:SS" from one hour (the RAG `startHms` format).
pub fn hms(sec: u64) -> String {
    let [h, m, s] = hms_parts(sec);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// Transcript time: always "H:MM:SS" (like the originals) unless `short`.
pub fn ts_time(sec: u64, short: bool) -> String {
    if short {
        hms(sec)
    } else {
        let [h, m, s] = hms_parts(sec);
        format!("{h}:{m:02}:{s:02}")
    }
}

/// Days since 1970-01-01 of the date `y-m-d` (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `(y, m, d)` of `z` days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(hms(0), "0:00");
        assert_eq!(hms(3134), "52:14");
        assert_eq!(hms(3600), "1:00:00");
        assert_eq!(ts_time(36, false), "0:00:36");
        assert_eq!(civil_from_days(days_from_civil(2010, 11, 8)), (2010, 11, 8));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }
}
