use super::*;

fn types(text: &str) -> Vec<(EntityType, String)> {
    let d = Detector::new().detect(text);
    d.entities.iter().map(|f| (f.entity, text[f.start..f.end].to_string())).collect()
}

fn has(text: &str, ty: EntityType, value: &str) -> bool {
    types(text).iter().any(|(t, v)| *t == ty && v == value)
}

#[test]
fn smoke() {
    assert!(has("mail me at jane.doe@example.com", EntityType::Email, "jane.doe@example.com"));
}
