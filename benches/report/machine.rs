//! What the report says about the machine: CPU model and count (`lscpu`), memory
//! (`/proc/meminfo`), kernel, rustc, and the load average as a sign of other work running.

use std::process::Command;

use crate::results::Machine;

/// The machine as far as this process can see it; peers' versions are added later.
pub fn describe() -> Machine {
    let lscpu = output("lscpu", &[]);
    let field = |name: &str| {
        lscpu.lines().find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_owned())
        })
    };
    let cpus = match (
        field("CPU(s)"),
        field("Thread(s) per core"),
        field("L3"),
        field("L3 cache"),
    ) {
        (Some(n), threads, l3, l3_cache) => {
            let mut s = format!("{n} logical CPUs");
            if let Some(t) = threads {
                s.push_str(&format!(", {t} thread(s) per core"));
            }
            if let Some(l3) = l3.or(l3_cache) {
                s.push_str(&format!(", L3 {l3}"));
            }
            s
        }
        _ => format!("{} (from the process's view)", rayon::current_num_threads()),
    };
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "unknown".into());
    Machine {
        // A virtual machine's model name may not name the generation ("AMD EPYC"), and
        // kernels differ between generations: the family and model do.
        cpu: match (field("Model name"), field("CPU family"), field("Model")) {
            (Some(name), Some(family), Some(model)) => {
                format!("{name} (family {family}, model {model})")
            }
            (name, _, _) => name.unwrap_or_else(|| "unknown".into()),
        },
        cpus,
        memory,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| output("uname", &["-r"])),
        rustc: output("rustc", &["-V"]),
        python: None,
        packages: Vec::new(),
    }
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// `program args`'s standard output, trimmed; empty when it did not run.
fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}
