"""A random PEFT LoRA adapter (rank 4, alpha 8, all seven projections, seed 5)
for testdata/hf/llama: python gen_hf_llama_peft.py testdata/hf/llama testdata/lora/hf-llama-peft"""
import json, sys, numpy as np
from safetensors.numpy import save_file
cfg = json.load(open(sys.argv[1] + "/config.json"))
H, I, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
hd = cfg.get("head_dim") or H // cfg["num_attention_heads"]
q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
shapes = {"q_proj": (q, H), "k_proj": (kv, H), "v_proj": (kv, H), "o_proj": (H, q),
          "gate_proj": (I, H), "up_proj": (I, H), "down_proj": (H, I)}
r = 4
rng = np.random.default_rng(5)
t = {}
for l in range(L):
    for m, (o, i) in shapes.items():
        part = "mlp" if m in ("gate_proj", "up_proj", "down_proj") else "self_attn"
        p = f"base_model.model.model.layers.{l}.{part}.{m}"
        t[p + ".lora_A.weight"] = (0.1 * rng.standard_normal((r, i))).astype(np.float32)
        t[p + ".lora_B.weight"] = (0.1 * rng.standard_normal((o, r))).astype(np.float32)
out = sys.argv[2]
import os; os.makedirs(out, exist_ok=True)
save_file(t, out + "/adapter_model.safetensors")
json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": 8, "target_modules": list(shapes),
           "bias": "none", "fan_in_fan_out": False, "use_rslora": False, "use_dora": False,
           "base_model_name_or_path": "testdata/hf/llama"}, open(out + "/adapter_config.json", "w"))
