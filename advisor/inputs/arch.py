"""A decoder's shape, read from a Hugging Face ``config.json``: what the memory model counts.

One dataclass covers the families people fine-tune: Llama-style (gated MLP, RMSNorm, GQA),
Phi / GPT-NeoX / Falcon / GPT-BigCode (plain GELU MLP, LayerNorm, parallel attention, MQA,
fused qkv) and mixture-of-experts (Mixtral, Qwen2/3-MoE, gpt-oss, Llama 4, DeepSeek with
shared experts and multi-head latent attention). Every count is derived from config fields;
``from_hf`` names the field that is missing when a config cannot be read.

Module names are the advisor's spelling whatever the family calls them: q_proj/k_proj/v_proj
(a fused ``query_key_value`` / ``c_attn`` / ``qkv_proj`` counts as its three parts), o_proj,
gate_proj/up_proj/down_proj (a plain MLP has only up = fc1 and down = fc2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from advisor.errors import AdvisorError

GATED, PLAIN = "gated", "plain"


@dataclass(frozen=True)
class Arch:
    layers: int
    hidden: int
    intermediate: int  # dense MLP width (Llama 4 / DeepSeek dense layers); expert width below
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    head_dim: int | None = None  # None → hidden // heads (Gemma sets it: 8 heads × 256 ≠ 2048)
    qkv_bias: bool = False  # Qwen2 has biases on q, k, v
    mlp: str = GATED  # gated: act(gate(x)) * up(x); plain: fc2(gelu(fc1(x))) (Phi, NeoX, Falcon, BigCode)
    parallel: bool = False  # attention and MLP read the same normed input (Falcon, Phi, NeoX)
    norms_per_layer: int = 2  # Falcon-7B and Phi have one LayerNorm per layer
    layernorm: bool = False  # LayerNorm (weight + bias) instead of RMSNorm
    linear_bias: bool = False  # every linear has a bias (Phi, NeoX, BigCode)
    positions: int = 0  # learned absolute position embeddings (BigCode: n_positions rows)
    family: str = field(default="llama", compare=False)  # for messages; the shape is what compares
    # ---- mixture of experts (0 experts: dense)
    experts: int = 0  # routed experts per MoE layer
    experts_per_tok: int = 0
    expert_intermediate: int = 0  # each expert's MLP width
    shared_intermediate: int = 0  # total width of the always-on shared expert(s), 0 if none
    moe_layers: int = 0  # how many of the layers are MoE (the rest use the dense MLP)
    experts_fused: bool = False  # experts are one 3-D parameter, not nn.Linear (gpt-oss): bnb leaves them bf16
    # ---- Gemma 2 soft-capping: tanh on the attention scores forces eager attention; tanh on the logits
    attn_softcap: bool = False
    logit_softcap: bool = False
    # ---- transformers has no SDPA path for this family (gpt-oss's attention sinks): its default is eager
    # attention, S × S scores per head; ``eager_softmax_bytes``: the dtype its softmax output is kept in
    sdpa_unsupported: bool = False
    # ---- plain MLP: ff-wide tensors its activation saves for backward. A fused GELU (torch's, exact or tanh)
    # saves its input only; HF's "gelu_new" (Phi, GPT-2 defaults) is a chain of elementwise ops that saves its
    # input, x³'s input, tanh's output and 0.5·x: 4 (listed with saved_tensors_hooks on transformers 5)
    act_saved: int = 1
    qk_norm: bool = False  # RMSNorm on q and k before RoPE (Qwen3, Gemma 3, OLMo 2): each saves its fp32 input
    gate_act: str = "silu"  # gated MLP: act(gate) * up; silu (SwiGLU: Llama, Qwen, Mistral) or gelu_pytorch_tanh (Gemma)
    eager_softmax_bytes: int = 4
    # ---- DeepSeek multi-head latent attention: (q_lora_rank or 0, kv_lora_rank, nope, rope, v head dims)
    mla: tuple[int, int, int, int, int] | None = None
    # ---- context: max_position_embeddings (0: unknown); rope_scaling declared in the config
    max_positions: int = field(default=0, compare=False)
    rope_scaled: bool = field(default=False, compare=False)

    # ------------------------------------------------------------ shapes
    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def q_dim(self) -> int:
        if self.mla:
            return self.heads * (self.mla[2] + self.mla[3])
        return self.heads * self.hd

    @property
    def kv_dim(self) -> int:
        """Width of k (and of v) as attention sees them, before any repeat to the query heads."""
        if self.mla:  # MLA expands the latent to every head: k is nope+rope wide, v is v_head_dim
            return self.heads * (self.mla[2] + self.mla[3])
        return self.kv_heads * self.hd

    @property
    def attn_out_dim(self) -> int:
        return self.heads * self.mla[4] if self.mla else self.q_dim

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    def attn_linears(self) -> dict[str, tuple[int, int]]:
        d = self.hidden
        if self.mla:
            qr, kvr, nope, rope, v = self.mla
            q_in = qr or d  # with a q LoRA rank, q_proj reads the compressed query
            return {"q_proj": (q_in, self.heads * (nope + rope)), "k_proj": (d, kvr + rope),
                    "v_proj": (kvr, self.heads * (nope + v)), "o_proj": (self.heads * v, d)}  # fmt: skip
        q, kv = self.q_dim, self.kv_dim
        return {"q_proj": (d, q), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (q, d)}

    def mlp_linears(self, width: int | None = None) -> dict[str, tuple[int, int]]:
        d, f = self.hidden, self.intermediate if width is None else width
        if self.mlp == PLAIN:
            return {"up_proj": (d, f), "down_proj": (f, d)}
        return {"gate_proj": (d, f), "up_proj": (d, f), "down_proj": (f, d)}

    def linears(self) -> dict[str, tuple[int, int]]:
        """(d_in, d_out) of each linear of a dense layer, by the advisor's module names."""
        return {**self.attn_linears(), **self.mlp_linears()}

    @staticmethod
    def _n(shapes: dict[str, tuple[int, int]]) -> int:
        return sum(i * o for i, o in shapes.values())

    @property
    def attn_params(self) -> int:
        extra = self.hidden * self.mla[0] if self.mla and self.mla[0] else 0  # q_a_proj of q-LoRA MLA
        return self._n(self.attn_linears()) + extra

    @property
    def expert_params(self) -> int:
        """One routed expert's MLP."""
        return self._n(self.mlp_linears(self.expert_intermediate)) if self.is_moe else 0

    @property
    def moe_layer_mlp_params(self) -> int:
        shared = self._n(self.mlp_linears(self.shared_intermediate)) if self.shared_intermediate else 0
        router = self.hidden * self.experts
        return self.experts * self.expert_params + shared + router

    @property
    def dense_layers(self) -> int:
        return self.layers - (self.moe_layers if self.is_moe else 0)

    @property
    def layer_linear_params(self) -> int:
        """One layer's linear weights, averaged over dense and MoE layers (all experts counted)."""
        return round(self.linear_params / self.layers)

    @property
    def linear_params(self) -> int:
        dense = self.dense_layers * (self.attn_params + self._n(self.mlp_linears()))
        moe = self.moe_layers * (self.attn_params + self.moe_layer_mlp_params) if self.is_moe else 0
        return dense + moe

    @property
    def expert_linear_params(self) -> int:
        """All routed experts' weights over the model (what 'experts not adapted' leaves frozen)."""
        return self.moe_layers * self.experts * self.expert_params if self.is_moe else 0

    @property
    def active_linear_params(self) -> int:
        """Linear weights one token passes through: the active experts only (for FLOPs)."""
        if not self.is_moe:
            return self.linear_params
        return self.linear_params - self.moe_layers * (self.experts - self.experts_per_tok) * self.expert_params

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden + self.positions * self.hidden

    @property
    def head_params(self) -> int:
        """The LM head's own weight: 0 when tied to the embedding."""
        return 0 if self.tied else self.vocab * self.hidden

    @property
    def small_params(self) -> int:
        """Norms and biases."""
        per_norm = 2 * self.hidden if self.layernorm else self.hidden
        bias = (self.q_dim + 2 * self.kv_dim) if self.qkv_bias else 0
        if self.linear_bias:
            bias = sum(o for _, o in self.linears().values())
        return self.layers * (self.norms_per_layer * per_norm + bias) + per_norm

    @property
    def total_params(self) -> int:
        return self.linear_params + self.embedding_params + self.head_params + self.small_params

    @property
    def largest_linear(self) -> int:
        """Elements of the largest single weight matrix (one expert's, for MoE)."""
        shapes = [*self.attn_linears().values(), *self.mlp_linears().values()]
        if self.is_moe:
            shapes += self.mlp_linears(self.expert_intermediate).values()
        return max(i * o for i, o in shapes)

    def largest_tensor(self, stacked_experts: bool) -> int:
        """Elements of the largest single parameter tensor: the embedding, a linear, or, where each MoE
        layer's experts are one 3-D parameter per projection (transformers >= 5, gpt-oss on any), the
        stacked experts (E × 2·ff × d for a gated MLP's fused gate/up, E × ff × d for a plain one).
        Per-tensor work (CPU AdamW's temporaries, optimizer-in-backward) is that large."""
        out = max(self.embedding_params, self.largest_linear)
        if self.is_moe and (stacked_experts or self.experts_fused):
            out = max(out, self.experts * self.hidden * self.expert_intermediate * (1 if self.mlp == PLAIN else 2))
        return out

    def to_record(self) -> dict:
        """The harness's ``config.model.arch`` spelling (dense fields; MoE adds its own)."""
        out = {
            "num_hidden_layers": self.layers, "hidden_size": self.hidden,
            "intermediate_size": self.intermediate, "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads, "vocab_size": self.vocab,
            "tie_word_embeddings": self.tied,
        }  # fmt: skip
        if self.head_dim:
            out["head_dim"] = self.head_dim
        if self.is_moe:
            out.update(num_local_experts=self.experts, num_experts_per_tok=self.experts_per_tok,
                       moe_intermediate_size=self.expert_intermediate)  # fmt: skip
        return out

    @classmethod
    def from_hf(cls, cfg: dict, *, where: str = "config") -> "Arch":
        return from_hf(cfg, where=where)


# ---------------------------------------------------------------- config.json → Arch

# Per family: the config keys for each field (first present wins), and what HF defaults when absent.
_ALIASES = {
    "layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "hidden": ("hidden_size", "n_embd", "d_model"),
    "heads": ("num_attention_heads", "n_head"),
    "vocab": ("vocab_size",),
    "intermediate": ("intermediate_size", "n_inner", "ffn_hidden_size"),
}
# HF's PretrainedConfig ties embeddings by default; Llama-family configs override that to False.
_TIED_DEFAULT = {"falcon": True, "gpt_bigcode": True, "gpt2": True, "gemma": True, "gemma2": True, "gemma3_text": True}
_PLAIN_MLP = {"phi": (True, 1, True), "gpt_neox": (True, 2, True), "falcon": (True, 1, True), "gpt_bigcode": (False, 2, True),
              "gpt2": (False, 2, True), "stablelm": None}  # (parallel, norms per layer, layernorm)  # fmt: skip
NOT_DECODERS = ("t5", "bart", "mt5", "bert", "roberta", "whisper", "clip", "vit")
# The model_types whose every layer this dataclass describes: attention (MHA/GQA/MQA/MLA) + a dense or
# mixture-of-experts MLP. Anything else (Mamba/SSM and linear-attention hybrids such as nemotron_h,
# qwen3_next, granitemoehybrid, jamba, falcon_h1; families with their own parameter layout) would be
# sized as a Llama and silently wrong: it is refused, and `--simulate` (transformers builds the model
# and the real step is counted on fake tensors) is the way to size it.
SIZED = frozenset({
    "llama", "mistral", "mixtral", "qwen", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2",
    "gemma3_text", "phi", "phi3", "gpt_neox", "falcon", "gpt_bigcode", "gpt2", "stablelm", "llama4_text",
    "gpt_oss", "deepseek_v2", "deepseek_v3", "olmo", "olmo2", "granite", "smollm3",
})  # fmt: skip


# Families whose transformers (5.x) modeling class has ``_supports_sdpa = False``, so the default
# attention is eager, and the bytes its eager softmax output is kept in (gpt-oss: softmax over the scores
# and the sink logit in the scores' dtype, bf16 under autocast; the generic eager path: fp32, plus the
# bf16 copy the value matmul saves). Gemma 2 is eager by its soft-capping (attn_softcap).
NO_SDPA = {"gpt_oss": 2}
# Plain-MLP activations that are chains of elementwise ops (each saving a tensor), by name, and the
# activation a family's config defaults to when it names none (transformers' config classes).
COMPOSITE_ACT = {"gelu_new": 4}
# families whose attention normalizes q and k (q_norm/k_norm modules in transformers' classes)
QK_NORM = ("qwen3", "qwen3_moe", "gemma3", "gemma3_text", "olmo2", "olmo3")
_PLAIN_ACT_DEFAULT = {"phi": "gelu_new", "gpt2": "gelu_new", "gpt_bigcode": "gelu_pytorch_tanh"}


def _get(cfg: dict, field: str, where: str, family: str, default=None):
    for k in _ALIASES[field]:
        if cfg.get(k) is not None:
            return cfg[k]
    if default is not None:
        return default
    raise AdvisorError(f"{where}: missing {_ALIASES[field][0]} (a {family} config.json needs it)")


def _int(v, key: str, where: str) -> int:
    try:
        out = int(v)
    except (TypeError, ValueError):
        raise AdvisorError(f"{where}: {key} is '{v}', not a whole number") from None
    if out < 1:
        raise AdvisorError(f"{where}: {key} is {out}, must be >= 1")
    return out


def from_hf(cfg: dict, *, where: str = "config") -> Arch:
    """From a Hugging Face config dict (or a harness record's ``arch``); one-line errors name what is missing."""
    if isinstance(cfg.get("text_config"), dict):  # multimodal wrappers (Gemma 3, Llama 4) keep the decoder here
        cfg = {**cfg["text_config"], "model_type": cfg["text_config"].get("model_type") or cfg.get("model_type")}
    mt = str(cfg.get("model_type") or "llama")
    if mt in NOT_DECODERS or cfg.get("is_encoder_decoder"):
        raise AdvisorError(f"{where}: model_type '{mt}' is not a decoder-only transformer the advisor models")
    if mt not in SIZED:
        raise AdvisorError(f"{where}: model_type '{mt}' is not an architecture the analytic model can size "
                           f"(it knows attention + MLP/MoE decoders: {', '.join(sorted(SIZED))}); "
                           "use `advisor estimate --simulate`, which builds it with transformers and counts the real step")  # fmt: skip
    fam = mt
    L = _int(_get(cfg, "layers", where, fam), "num_hidden_layers", where)
    d = _int(_get(cfg, "hidden", where, fam), "hidden_size", where)
    H = _int(_get(cfg, "heads", where, fam), "num_attention_heads", where)
    V = _int(_get(cfg, "vocab", where, fam), "vocab_size", where)
    tied = bool(cfg.get("tie_word_embeddings", _TIED_DEFAULT.get(mt, False)))
    kv = cfg.get("num_key_value_heads") or cfg.get("num_kv_heads") or cfg.get("n_head_kv")
    if cfg.get("multi_query") and not cfg.get("new_decoder_architecture"):
        kv = 1  # Falcon-7B, SantaCoder / StarCoder: one K/V head
    kv = _int(kv or H, "num_key_value_heads", where)
    head_dim = cfg.get("head_dim")
    head_dim = int(head_dim) if head_dim and int(head_dim) * H != d else None
    kw: dict = {"family": mt}
    plain_default = 4 * d if mt in _PLAIN_MLP else None  # Falcon/BigCode default the MLP to 4 × hidden
    if mt in _PLAIN_MLP and _PLAIN_MLP[mt]:
        par, norms, ln = _PLAIN_MLP[mt]
        if mt == "gpt_neox":
            par = bool(cfg.get("use_parallel_residual", True))
        if mt == "falcon":
            par = bool(cfg.get("parallel_attn", True))
            norms = 2 if cfg.get("new_decoder_architecture") or not par else 1
        act = cfg.get("hidden_act") or cfg.get("activation_function") or _PLAIN_ACT_DEFAULT.get(mt, "gelu")
        kw["act_saved"] = COMPOSITE_ACT.get(str(act), 1)
        kw.update(mlp=PLAIN, parallel=par, norms_per_layer=norms, layernorm=ln,
                  linear_bias=bool(cfg.get("bias", mt != "falcon")))  # fmt: skip
        if mt in ("gpt_bigcode", "gpt2"):  # learned absolute position tables (wpe)
            kw["positions"] = int(cfg.get("n_positions") or (1024 if mt == "gpt2" else 2048))
    if mt not in _PLAIN_MLP or not _PLAIN_MLP[mt]:
        kw["gate_act"] = str(cfg.get("hidden_activation") or cfg.get("hidden_act") or ("gelu_pytorch_tanh" if mt.startswith("gemma") else "silu"))
    inter = cfg.get("intermediate_size") if mt != "llama4_text" else cfg.get("intermediate_size_mlp")
    moe = _moe(cfg, mt, L, where)
    kw.update(moe)
    if moe and moe["moe_layers"] == L:
        inter = inter or moe["expert_intermediate"]
    if inter is None:
        if plain_default is None:
            raise AdvisorError(f"{where}: missing intermediate_size (the MLP width)")
        inter = plain_default
    inter = _int(inter, "intermediate_size", where)
    if mt == "qwen":  # Qwen (v1) stores 2× the MLP width: w1/w2 are each half
        inter //= 2
    if cfg.get("kv_lora_rank"):  # DeepSeek-V2/V3 multi-head latent attention
        need = ("qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
        missing = [x for x in need if not cfg.get(x)]
        if missing:
            raise AdvisorError(f"{where}: missing {', '.join(missing)} (multi-head latent attention needs them)")
        kw["mla"] = (int(cfg.get("q_lora_rank") or 0), int(cfg["kv_lora_rank"]), *(int(cfg[x]) for x in need))
    kw["attn_softcap"] = bool(cfg.get("attn_logit_softcapping"))
    kw["qk_norm"] = mt in QK_NORM
    if mt in NO_SDPA:  # transformers' class sets _supports_sdpa = False: eager unless flash is asked for
        kw["sdpa_unsupported"], kw["eager_softmax_bytes"] = True, NO_SDPA[mt]
    kw["logit_softcap"] = bool(cfg.get("final_logit_softcapping"))
    qkv_bias = bool(cfg.get("attention_bias", False)) or mt in ("qwen", "qwen2", "qwen2_moe")
    ctx = next((cfg[k] for k in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
                if isinstance(cfg.get(k), int) and cfg[k] > 0), 0)  # fmt: skip
    kw.update(max_positions=ctx, rope_scaled=bool(cfg.get("rope_scaling")))
    return Arch(L, d, inter, H, kv, V, tied, head_dim, qkv_bias, **kw)


def _moe(cfg: dict, mt: str, L: int, where: str) -> dict:
    """The mixture-of-experts fields of ``Arch`` (empty for a dense model): experts, top-k, widths, and
    how many layers route (DeepSeek's first dense layers, Llama 4's interleave, Qwen's mlp_only_layers)."""
    n_exp = cfg.get("num_local_experts") or cfg.get("num_experts") or cfg.get("n_routed_experts")
    if not n_exp:
        return {}
    k = cfg.get("num_experts_per_tok") or cfg.get("experts_per_token") or cfg.get("num_experts_per_token")
    if not k:
        raise AdvisorError(f"{where}: missing num_experts_per_tok (a mixture-of-experts config needs it)")
    width = cfg.get("moe_intermediate_size") or cfg.get("intermediate_size")
    if not width:
        raise AdvisorError(f"{where}: missing moe_intermediate_size (the experts' MLP width)")
    shared = int(cfg.get("shared_expert_intermediate_size") or 0)
    if cfg.get("n_shared_experts"):  # DeepSeek: n shared experts of the routed width
        shared = int(cfg["n_shared_experts"]) * int(width)
    if mt == "llama4_text":  # one shared expert of the expert width
        shared = int(width)
    moe_layers = L
    if cfg.get("first_k_dense_replace"):
        moe_layers = L - int(cfg["first_k_dense_replace"])
    step = cfg.get("interleave_moe_layer_step") or cfg.get("decoder_sparse_step") or 1
    moe_layers = len(range(int(step) - 1, moe_layers, int(step))) if int(step) > 1 else moe_layers
    moe_layers -= len(cfg.get("mlp_only_layers") or [])
    return dict(experts=_int(n_exp, "num_experts", where), experts_per_tok=_int(k, "num_experts_per_tok", where),
                expert_intermediate=_int(width, "moe_intermediate_size", where), shared_intermediate=shared,
                moe_layers=max(0, moe_layers), experts_fused=mt == "gpt_oss")  # fmt: skip
