//! Prints what the demo recipe makes of FOLDOC (counts, a few exchanges).
use hearth_distill::demo::{build_documents, DemoConfig};
use hearth_distill::foldoc;

fn main() {
    let cfg = DemoConfig::default();
    let entries = foldoc::load(&cfg.dict, &cfg.index).expect("install dict-foldoc");
    let d = build_documents(&entries, cfg.seed, cfg.holdout);
    let bytes: usize = d.train_plain.iter().map(String::len).sum();
    let qa_bytes: usize = d.train_chat.iter().map(|q| q.question.len() + q.answer.len()).sum();
    println!("{} entries; train {} plain ({} bytes) + {} Q&A ({} bytes); held out {} plain, {} Q&A",
        entries.len(), d.train_plain.len(), bytes, d.train_chat.len(), qa_bytes, d.val_plain.len(), d.val_chat.len());
    for q in d.train_chat.iter().step_by(1500) {
        println!("Q: {}\nA: {}\n", q.question, q.answer);
    }
    println!("held out: {:?}", &d.val_headwords[..10.min(d.val_headwords.len())]);
}
