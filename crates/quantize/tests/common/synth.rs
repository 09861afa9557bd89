//! The synthetic models of tools/quantize/synth.py, rebuilt bit for bit in
//! Rust (see that script's docstring for the value recipe), as an
//! in-memory [`TensorSource`]. Only the metadata the type choice reads is
//! synthesized (the tokenizer is not needed to quantize).

#![allow(dead_code)]

use hearth_formats::{GgmlType, MetaValue};
use hearth_quantize::{SourceError, SourceTensor, TensorSource};
use std::borrow::Cow;
use std::ops::Range;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Clone, Debug)]
pub struct Recipe {
    pub name: String,
    pub arch: String,
    pub input_type: GgmlType,
    pub n_embd: u64,
    pub n_layer: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    pub n_ff: u64,
    pub n_vocab: u64,
    pub tied: bool,
    pub bias: bool,
    pub seed: u64,
    pub data: bool,
}

pub fn recipes() -> Vec<Recipe> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/recipes.json");
    let text = std::fs::read_to_string(path).expect("recipes.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("recipes.json is JSON");
    let u = |r: &serde_json::Value, k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k}"));
    let b = |r: &serde_json::Value, k: &str| r[k].as_bool().unwrap_or_else(|| panic!("{k}"));
    let s =
        |r: &serde_json::Value, k: &str| r[k].as_str().unwrap_or_else(|| panic!("{k}")).to_string();
    v["recipes"]
        .as_array()
        .expect("recipes")
        .iter()
        .map(|r| Recipe {
            name: s(r, "name"),
            arch: s(r, "arch"),
            input_type: GgmlType::from_name(&s(r, "input_type")).expect("input type"),
            n_embd: u(r, "n_embd"),
            n_layer: u(r, "n_layer"),
            n_head: u(r, "n_head"),
            n_head_kv: u(r, "n_head_kv"),
            n_ff: u(r, "n_ff"),
            n_vocab: u(r, "n_vocab"),
            tied: b(r, "tied"),
            bias: b(r, "bias"),
            seed: u(r, "seed"),
            data: r.get("data").and_then(|d| d.as_bool()).unwrap_or(true),
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Matrix,
    Norm,
    Bias,
}

fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

fn uniform(seed: u64, name: &str, n: usize) -> Vec<f32> {
    let s0 = seed ^ fnv1a64(name);
    (1..=n as u64)
        .map(|k| {
            let mut z = s0.wrapping_add(k.wrapping_mul(GOLDEN));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

fn normal(seed: u64, name: &str, n: usize, std: f32) -> Vec<f32> {
    let u = uniform(seed, name, 3 * n);
    u.chunks_exact(3)
        .map(|c| ((c[0] + c[1]) + c[2]) * std)
        .collect()
}

impl Recipe {
    /// (name, dims in ggml order, kind), in synth.py's file order.
    pub fn tensor_list(&self) -> Vec<(String, Vec<u64>, Kind)> {
        let (e, h, kv, f, v) = (
            self.n_embd,
            self.n_head,
            self.n_head_kv,
            self.n_ff,
            self.n_vocab,
        );
        let hd = e / h;
        let mut t = vec![
            ("token_embd.weight".to_string(), vec![e, v], Kind::Matrix),
            ("output_norm.weight".into(), vec![e], Kind::Norm),
        ];
        if !self.tied {
            t.push(("output.weight".into(), vec![e, v], Kind::Matrix));
        }
        for i in 0..self.n_layer {
            let p = format!("blk.{i}.");
            t.push((p.clone() + "attn_norm.weight", vec![e], Kind::Norm));
            t.push((p.clone() + "attn_q.weight", vec![e, h * hd], Kind::Matrix));
            t.push((p.clone() + "attn_k.weight", vec![e, kv * hd], Kind::Matrix));
            t.push((p.clone() + "attn_v.weight", vec![e, kv * hd], Kind::Matrix));
            if self.bias {
                t.push((p.clone() + "attn_q.bias", vec![h * hd], Kind::Bias));
                t.push((p.clone() + "attn_k.bias", vec![kv * hd], Kind::Bias));
                t.push((p.clone() + "attn_v.bias", vec![kv * hd], Kind::Bias));
            }
            t.push((
                p.clone() + "attn_output.weight",
                vec![h * hd, e],
                Kind::Matrix,
            ));
            t.push((p.clone() + "ffn_norm.weight", vec![e], Kind::Norm));
            t.push((p.clone() + "ffn_gate.weight", vec![e, f], Kind::Matrix));
            t.push((p.clone() + "ffn_up.weight", vec![e, f], Kind::Matrix));
            t.push((p + "ffn_down.weight", vec![f, e], Kind::Matrix));
        }
        t
    }

    /// The f32 values synth.py draws for a tensor (before any F16/BF16
    /// rounding).
    pub fn values(&self, name: &str, dims: &[u64], kind: Kind) -> Vec<f32> {
        let n = dims.iter().product::<u64>() as usize;
        if !self.data {
            return vec![0.0; n];
        }
        match kind {
            Kind::Matrix => normal(self.seed, name, n, (1.0 / (dims[0] as f64).sqrt()) as f32),
            Kind::Norm => uniform(self.seed, name, n)
                .into_iter()
                .map(|u| 1.0 + u * 0.1f32)
                .collect(),
            Kind::Bias => normal(self.seed, name, n, 0.02),
        }
    }

    /// The tensor as stored in the input file: matrices in the recipe's
    /// input type, norms and biases in F32.
    pub fn stored(&self, name: &str, dims: &[u64], kind: Kind) -> (GgmlType, Vec<u8>) {
        let x = self.values(name, dims, kind);
        let ty = if kind == Kind::Matrix {
            self.input_type
        } else {
            GgmlType::F32
        };
        let bytes = match ty {
            GgmlType::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
            GgmlType::F16 => x
                .iter()
                .flat_map(|&v| hearth_kernels::fp::f32_to_f16(v).to_le_bytes())
                .collect(),
            GgmlType::BF16 => x
                .iter()
                .flat_map(|&v| hearth_kernels::fp::f32_to_bf16(v).to_le_bytes())
                .collect(),
            other => panic!("synthetic inputs are F32/F16/BF16, not {other}"),
        };
        (ty, bytes)
    }

    pub fn metadata(&self) -> Vec<(String, MetaValue)> {
        let a = &self.arch;
        vec![
            ("general.architecture".into(), MetaValue::String(a.clone())),
            ("general.name".into(), MetaValue::String(self.name.clone())),
            (
                format!("{a}.block_count"),
                MetaValue::U32(self.n_layer as u32),
            ),
            (
                format!("{a}.embedding_length"),
                MetaValue::U32(self.n_embd as u32),
            ),
            (
                format!("{a}.attention.head_count"),
                MetaValue::U32(self.n_head as u32),
            ),
            (
                format!("{a}.attention.head_count_kv"),
                MetaValue::U32(self.n_head_kv as u32),
            ),
        ]
    }

    /// The whole input in memory.
    pub fn source(&self) -> MemSource {
        let mut tensors = Vec::new();
        let mut data = Vec::new();
        for (name, dims, kind) in self.tensor_list() {
            let (ty, bytes) = self.stored(&name, &dims, kind);
            tensors.push(SourceTensor { name, dims, ty });
            data.push(bytes);
        }
        MemSource {
            metadata: self.metadata(),
            tensors,
            data,
        }
    }
}

/// Named tensors held in memory.
pub struct MemSource {
    pub metadata: Vec<(String, MetaValue)>,
    pub tensors: Vec<SourceTensor>,
    pub data: Vec<Vec<u8>>,
}

impl TensorSource for MemSource {
    fn metadata(&self) -> &[(String, MetaValue)] {
        &self.metadata
    }

    fn tensors(&self) -> &[SourceTensor] {
        &self.tensors
    }

    fn read_rows(&self, index: usize, rows: Range<u64>) -> Result<Cow<'_, [u8]>, SourceError> {
        let t = &self.tensors[index];
        let rb = t.ty.row_bytes(t.row_len()).expect("whole blocks") as usize;
        Ok(Cow::Borrowed(
            &self.data[index][rows.start as usize * rb..rows.end as usize * rb],
        ))
    }
}

impl Recipe {
    /// The input's tensor list with no data, for planning only (the
    /// all-zero 80-layer model would be 70 MB).
    pub fn source_plan_only(&self) -> MemSource {
        let tensors = self
            .tensor_list()
            .into_iter()
            .map(|(name, dims, kind)| SourceTensor {
                name,
                dims,
                ty: if kind == Kind::Matrix {
                    self.input_type
                } else {
                    GgmlType::F32
                },
            })
            .collect::<Vec<_>>();
        MemSource {
            metadata: self.metadata(),
            data: vec![Vec::new(); tensors.len()],
            tensors,
        }
    }
}
