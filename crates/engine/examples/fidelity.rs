//! Debug tool: compare greedy tokens and first-step logits with a fixture's
//! expected values. Usage: fidelity MODEL.gguf expected-VARIANT.json
use hearth_engine::{Engine, EngineConfig, Flow, GenerateRequest, SamplerConfig};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let engine = Engine::load(args[1].as_ref(), EngineConfig { threads: 2, n_batch: std::env::var("NB").ok().and_then(|s| s.parse().ok()).unwrap_or(512), cache_type_k: if std::env::var("KV32").is_ok() { hearth_models::KvType::F32 } else { hearth_models::KvType::F16 }, cache_type_v: if std::env::var("KV32").is_ok() { hearth_models::KvType::F32 } else { hearth_models::KvType::F16 } }).unwrap();
    let exp: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&args[2]).unwrap()).unwrap();
    for p in exp["prompts"].as_array().unwrap() {
        let text = p["text"].as_str().unwrap();
        let want_prompt: Vec<u32> = p["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let got_prompt = engine.tokenize(text, true, true);
        let want: Vec<u32> = p["generated_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let mut session = engine.new_session(256);
        let mut logits = Vec::new();
        engine.eval(&mut session, &want_prompt, &mut logits).unwrap();
        if std::env::var("DUMP").is_ok() { dump(&format!("/tmp/ours_{}.bin", p["kind"].as_str().unwrap()), &logits); }
        let fl = &p["first_logits"];
        let mut maxd = 0f32;
        for key in ["top", "sample"] {
            let ids = if key == "top" { fl["top_ids"].as_array() } else { exp["sample_ids"].as_array() };
            let vals = fl[format!("{key}_logits")].as_array();
            if let (Some(ids), Some(vals)) = (ids, vals) {
                for (i, v) in ids.iter().zip(vals) {
                    let d = (logits[i.as_u64().unwrap() as usize] - v.as_f64().unwrap() as f32).abs();
                    maxd = maxd.max(d);
                }
            }
        }
        if std::env::var("TF").is_ok() {
            let mut session = engine.new_session(256);
            let mut all = Vec::new();
            let mut lg = Vec::new();
            engine.eval(&mut session, &want_prompt, &mut lg).unwrap();
            all.extend_from_slice(&lg);
            for &t in &want { engine.eval(&mut session, &[t], &mut lg).unwrap(); all.extend_from_slice(&lg); }
            dump(&format!("/tmp/ours_all_{}.bin", p["kind"].as_str().unwrap()), &all);
        }
        let mut session = engine.new_session(256);
        let req = GenerateRequest { prompt: want_prompt.clone(), max_tokens: want.len(), sampler: SamplerConfig::greedy(), ignore_eos: false };
        let mut got = Vec::new();
        engine.generate(&mut session, &req, &mut |ev| { got.push(ev.id); Flow::Continue }).unwrap();
        let agree = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        println!("{:8} tok_prompt={} agree={}/{} max|dlogit|={:.2e} margin_min={}", p["kind"].as_str().unwrap(), got_prompt == want_prompt, agree, want.len(), maxd, p["min_margin"]);
    }
}
#[allow(dead_code)]
fn dump(path: &str, v: &[f32]) {
    let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, b).unwrap();
}
