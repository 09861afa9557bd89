//! Development tool: prints what the detector finds in each argument.
fn main() {
    let det = hearth_guard::Detector::new();
    for text in std::env::args().skip(1) {
        let d = det.detect(&text);
        for f in &d.entities {
            println!("ENT {} {:?} {:.2}", f.entity, &text[f.start..f.end], f.confidence);
        }
        for f in &d.uncertain {
            println!("UNC {} {:?} {:.2}", f.entity, &text[f.start..f.end], f.confidence);
        }
        println!("--");
    }
}
