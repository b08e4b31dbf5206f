//! Prometheus text exposition of counters and gauges, without a metrics framework: the agent
//! has a few dozen series, and each update is one short lock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
}

#[derive(Debug, Default)]
struct Family {
    help: &'static str,
    kind: Option<Kind>,
    series: BTreeMap<String, f64>,
}

/// A registry of metric families.
#[derive(Debug, Default)]
pub struct Metrics {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

fn labels(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let mut s = String::from("{");
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = write!(s, "{k}=\"{v}\"");
    }
    s.push('}');
    s
}

impl Metrics {
    fn update(
        &self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        l: &[(&str, &str)],
        f: impl FnOnce(&mut f64),
    ) {
        let mut fams = crate::locks::lock(&self.families);
        let fam = fams.entry(name).or_default();
        fam.help = help;
        fam.kind = Some(kind);
        f(fam.series.entry(labels(l)).or_insert(0.0));
    }

    /// Adds to a counter.
    pub fn inc(&self, name: &'static str, help: &'static str, l: &[(&str, &str)], by: f64) {
        self.update(name, help, Kind::Counter, l, |v| *v += by);
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, help: &'static str, l: &[(&str, &str)], value: f64) {
        self.update(name, help, Kind::Gauge, l, |v| *v = value);
    }

    /// Drops every series of a gauge family (before re-setting a changing label set).
    pub fn clear(&self, name: &'static str) {
        if let Some(f) = crate::locks::lock(&self.families).get_mut(name) {
            f.series.clear();
        }
    }

    /// A counter's or gauge's current value.
    pub fn get(&self, name: &str, l: &[(&str, &str)]) -> Option<f64> {
        crate::locks::lock(&self.families).get(name)?.series.get(&labels(l)).copied()
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let fams = crate::locks::lock(&self.families);
        let mut out = String::new();
        for (name, f) in fams.iter() {
            let kind = match f.kind {
                Some(Kind::Counter) => "counter",
                _ => "gauge",
            };
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {kind}", f.help);
            for (l, v) in &f.series {
                let _ = writeln!(out, "{name}{l} {v}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.inc("odi_downloads_total", "Downloads served.", &[("catalog", "a\"b")], 1.0);
        m.inc("odi_downloads_total", "Downloads served.", &[("catalog", "a\"b")], 2.0);
        m.set("odi_store_bytes", "Bytes stored.", &[], 42.0);
        let text = m.render();
        assert!(text.contains("# TYPE odi_downloads_total counter"));
        assert!(text.contains("odi_downloads_total{catalog=\"a\\\"b\"} 3"));
        assert!(text.contains("odi_store_bytes 42"));
    }
}
