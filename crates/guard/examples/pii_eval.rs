//! Development tool: prints the evaluation report for a JSONL corpus and,
//! with `--misses`, the missed entities and false positives (the corpus
//! values are fictitious; do not run this on real data).
use std::io::BufRead;

use hearth_guard::eval::{covered, evaluate_file, parse_record};
use hearth_guard::Detector;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("usage: pii_eval FILE [--misses] [--fp] [--clean]");
    let det = Detector::new();
    let rep = evaluate_file(std::path::Path::new(path), &det).expect("eval");
    println!("{}", serde_json::to_string_pretty(&rep).unwrap());
    let misses = args.iter().any(|a| a == "--misses");
    let fps = args.iter().any(|a| a == "--fp");
    let clean = args.iter().any(|a| a == "--clean");
    if !(misses || fps || clean) {
        return;
    }
    let f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    for (i, line) in f.lines().enumerate() {
        let (text, gold) = parse_record(&line.unwrap(), i + 1).unwrap();
        let d = det.detect(&text);
        if misses {
            for g in &gold {
                if !covered(&text, g, &d.entities) {
                    let got: Vec<String> = d.entities.iter().chain(&d.uncertain).filter(|f| f.overlaps(g.start, g.end)).map(|f| format!("{}:{:?}@{:.2}", f.entity, &text[f.start..f.end], f.confidence)).collect();
                    println!("MISS {} {:?} | got {:?} | {:?}", g.entity, &text[g.start..g.end], got, text);
                }
            }
        }
        if fps {
            for f in &d.entities {
                if !gold.iter().any(|g| f.overlaps(g.start, g.end)) {
                    println!("FP {} {:?}@{:.2} | {:?}", f.entity, &text[f.start..f.end], f.confidence, text);
                }
            }
        }
        if clean && gold.is_empty() && !d.is_clean() {
            for f in d.entities.iter().chain(&d.uncertain) {
                println!("CLEAN-FLAG {} {:?}@{:.2} | {:?}", f.entity, &text[f.start..f.end], f.confidence, text);
            }
        }
    }
}
