"""What autograd keeps per token: one decoder layer's saved tensors, the head's, and the logits'.

Counted tensor by tensor (bytes per token; ``a`` = activation bytes, 2 for bf16):
- norms: RMSNorm upcasts its input to fp32 and saves it (HF, torchtune and litgpt all do); a
  LayerNorm saves its input in the compute dtype. Full fine-tuning also saves the normalised
  copy for the norm weight's gradient. A fused RMSNorm (``--kernels rms_norm``: Liger, Unsloth,
  fms-acceleration; ``harness.kernels``) saves its input as it comes (the residual stream's dtype) and
  a per-row fp32 inverse RMS, nothing for the weight: under full checkpointing a layer's first norm
  then saves nothing new, its input being the checkpointed one.
- attention: SDPA saves q, k, v and its output. HF's sdpa/eager paths and torchtune/litgpt
  expand k and v to every query head first (repeat_kv), so GQA/MQA save q-wide k and v; the
  flash-attention-2 kernel takes them unexpanded. Eager attention adds the fp32 softmax.
- gated MLP: act(gate) saves gate's output, the product saves act's output and up's: 3 × ff; a
  fused SwiGLU (``--kernels swiglu``) saves gate's and up's only, 2 × ff, and writes their gradients
  over them (dense and shared-expert MLPs: routed experts keep their own code).
  Plain MLP (GELU): only fc1's output, for GELU's backward: 1 × ff; HF's composite "gelu_new" 4 × ff (the hf stack; litgpt/torchtune use torch's fused GELU).
- mixture of experts: each token's k experts keep their MLP activations, plus the expert output
  (for the routing weight's gradient) and the fp32 router softmax; the shared expert as a dense MLP.
- trainable inputs: a linear whose weight trains saves its input (full fine-tuning), shared by
  the linears that read the same tensor; LoRA's lora_A saves its (cast or dropped-out) input,
  lora_B lora_A's r-wide output; DoRA adds the base and LoRA results per adapted module. A fused
  LoRA op (``--kernels lora``: Unsloth, fms-acceleration) keeps only its dropped-out input, in the
  input's dtype (no fp32 cast, no mask), or shares the input when there is no dropout.
- QLoRA with ``prepare_model_for_kbit_training`` (the HF stack): the norms run in fp32 and
  bitsandbytes casts each 4-bit linear's output back to its fp32 input dtype, so the residual
  stream and the MLP's saved tensors are fp32; SDPA still runs in bf16 under autocast.
"""

from __future__ import annotations

from advisor.inputs.arch import PLAIN

F32 = 4
CHUNKED_CE_CHUNKS = 8  # torchtune's CEWithChunkedOutputLoss


def residual_bytes(s) -> int:
    """Bytes an element of the residual stream and the MLP's tensors: fp32 under prepare_model_for_kbit_training
    (norms in fp32; bitsandbytes returns a 4-bit linear's output in its input's dtype), else the compute dtype."""
    return F32 if s.kbit_prep else s.act_bytes


def fused_lora(s) -> bool:
    """peft's LoRA runs as one fused op (``--kernels lora``: Unsloth, fms-acceleration); DoRA keeps peft's path."""
    return "lora" in s.kernels and s.method != "dora"


def fused_norm(s) -> bool:
    """The model's RMSNorms run a fused kernel (``--kernels rms_norm``); LayerNorms keep torch's."""
    return "rms_norm" in s.kernels and not s.arch.layernorm


def fused_swiglu(s) -> bool:
    """The dense (and shared-expert) gated MLPs run a fused SiLU-mul (``--kernels swiglu``): SwiGLU models only."""
    return "swiglu" in s.kernels and s.arch.mlp != PLAIN and s.arch.gate_act in ("silu", "swish")


def checkpointed_norm_alias(s) -> float:
    """Per token, what a fused first norm's saved input shares with the layer input that full checkpointing
    keeps: the recomputed layer adds nothing there (torch's RMSNorm saves a fresh fp32 copy instead)."""
    if not fused_norm(s) or s.ckpt != "full":
        return 0.0
    return residual_bytes(s) * s.arch.hidden


def _lora_terms(s, mods, shapes: dict, inputs: dict, dtype: dict, saved: set, fused_ok: bool = True) -> float:
    """LoRA/DoRA's own saved tensors for ``mods`` of one block; inputs it shares go into ``saved``."""
    a, ad = s.act_bytes, s.adapter_bytes
    drop = s.lora_dropout > 0
    mask = ad if s.device == "cpu" else 1  # CUDA's fused dropout keeps a bool mask; CPU's multiplies by a float one
    # Under autocast (HF Trainer's bf16=True, the harness) lora_A's matmul casts its input to the compute
    # dtype and saves that copy; the fp32 cast and dropout output themselves are not saved.
    kept = a if s.autocast else ad
    fused = fused_ok and fused_lora(s)
    total = 0.0
    for m in mods:
        if m not in shapes:
            continue
        d_in, d_out = shapes[m]
        if fused:  # its input as it comes, dropped out (a fresh copy per module) or shared; no mask, no r-wide output
            if drop:
                total += dtype[inputs[m]] * d_in
            else:
                saved.add(inputs[m])
            continue
        cast = ad != dtype[inputs[m]]  # peft casts the input to the adapter dtype: a fresh copy per module
        if cast or drop or (s.autocast and dtype[inputs[m]] != a):  # a fresh copy per module, + the dropout mask
            total += kept * d_in + (mask * d_in if drop else 0)
        else:
            saved.add(inputs[m])
        total += kept * s.rank
        if s.method == "dora":  # base result (for the magnitude grad) + the lora result
            total += (a + kept) * d_out
    return total


def first_layer_savings(s) -> float:
    """Per token, what the first layer does not save when nothing before it trains (adapters without
    checkpointing: the embedding's output needs no gradient, peft/harness enable input grads only with
    checkpointing): its first norm's fp32 input and the dropout masks of the modules reading it."""
    if not s.adapted or s.ckpt != "none":
        return 0.0
    d = s.arch.hidden
    mask = (s.adapter_bytes if s.device == "cpu" else 1) if s.lora_dropout > 0 else 0
    if fused_lora(s):
        mask = 0  # the fused op keeps no mask, and keeps its dropped-out input whether or not x needs a gradient
    targeted = sum(1 for m in ("q_proj", "k_proj", "v_proj") if m in s.target_modules)
    norm = F32 * d if not s.arch.layernorm or s.kbit_prep else s.act_bytes * d
    if fused_norm(s):
        norm = residual_bytes(s) * d + F32
    return norm + targeted * mask * d


def eager_attention(s) -> bool:
    """Whether attention materializes S × S scores: asked for (``--attention eager``), forced by Gemma 2's
    soft-capping, or the default of a family transformers has no SDPA path for (gpt-oss) unless flash is asked."""
    arch = s.arch
    return s.attention == "eager" or arch.attn_softcap or (arch.sdpa_unsupported and s.attention == "sdpa")


def layer_activation_bytes(s) -> float:
    """Bytes autograd saves in one decoder layer, per token, without checkpointing (MoE: layer average)."""
    arch, a = s.arch, s.act_bytes
    d, q, kv, o_in = arch.hidden, arch.q_dim, arch.kv_dim, arch.attn_out_dim
    full = not s.adapted
    # Inputs of the block's linears are saved when their weight trains (full). bitsandbytes' MatMul4Bit
    # keeps only the packed weight B for a frozen 4-bit layer (bitsandbytes >= 0.45), so QLoRA saves no
    # base input; older releases kept A too (`ctx.tensors = (A, B)`): Setup.bnb_keeps_input.
    keep_inputs = full or s.bnb_keeps_input
    r = m = residual_bytes(s)  # residual stream / normed outputs; MLP tensors
    mods = set(s.target_modules) - {"lm_head"}
    x2 = "x1" if arch.parallel else "x2"  # parallel attention: the MLP reads the attention's input
    dtype = {"x1": r, "attn": a, "x2": r, "prod": m}
    total = 0.0
    # norms
    if fused_norm(s):  # the input as it comes + an fp32 inverse RMS per row; the weight's grad needs no copy
        total += arch.norms_per_layer * (r * d + F32)
    else:
        norm = F32 * d if not arch.layernorm or s.kbit_prep else a * d
        total += arch.norms_per_layer * (norm + (r * d if full else 0))
    if arch.qk_norm:  # q_norm and k_norm: as the layer's norms, on q's and k's widths (per-head rows)
        total += (a + F32 / arch.hd if fused_norm(s) else F32) * (q + kv)
    # attention: q, k, v (expanded to every head unless flash-attn), output
    kv_saved = kv if s.attention == "flash" or arch.mla else q
    total += a * (q + 2 * kv_saved + o_in) if not arch.mla else a * (q + kv + arch.heads * arch.mla[4] + o_in)
    total += F32 * arch.heads  # flash / memory-efficient attention's fp32 log-sum-exp per head
    if eager_attention(s):  # fp32 softmax output + its bf16 copy, per head per key
        # Gemma 2's tanh soft-capping of the scores has no fused kernel: eager attention, + the saved tanh output
        soft = arch.eager_softmax_bytes if arch.sdpa_unsupported else F32 + a
        total += (soft + (a if arch.attn_softcap else 0)) * arch.heads * s.seq_len
    attn_in = {"q_proj": "x1", "k_proj": "x1", "v_proj": "x1", "o_proj": "attn"}
    saved = {"x1", "attn"} if keep_inputs else set()
    total += _lora_terms(s, mods, arch.attn_linears(), attn_in, dtype, saved)
    total += sum(dtype[t] * {"x1": d, "attn": o_in}[t] for t in saved)
    attn_saved = saved
    # MLP: dense layers and MoE layers, averaged over the stack
    mlp_in = {"gate_proj": x2, "up_proj": x2, "down_proj": "prod"}

    def mlp_block(width: int, per_token: int, *, own_input: bool, lora: bool = True) -> float:
        """Saved by one MLP per token routed through it; ``own_input``: its input is a fresh copy (an expert's gather)."""
        # plain: fc1's output (+ what HF's composite GELU saves; litgpt and torchtune call torch's fused GELU)
        gated = 2 if fused_swiglu(s) and not own_input else 3  # fused SwiGLU: gate's and up's outputs only
        t = ((arch.act_saved if s.stack == "hf" else 1) if arch.mlp == PLAIN else gated) * m * width
        kept = ({"prod"} | ({x2} if own_input or x2 == "x2" else set())) if keep_inputs else set()
        if lora:  # routed experts (own_input) keep peft's path under the fused LoRA op
            t += _lora_terms(s, mods, arch.mlp_linears(width), mlp_in, dtype, kept, fused_ok=not own_input)
        if not own_input and x2 == "x1" and "x1" in attn_saved:
            kept.discard("x1")  # already saved by attention
        return per_token * (t + sum(dtype[i] * (width if i == "prod" else d) for i in kept))

    dense = mlp_block(arch.intermediate, 1, own_input=False)
    if not arch.is_moe:
        return total + dense
    k = arch.experts_per_tok
    # each token's k experts, their outputs (saved for the routing weight's grad) and the fp32 router softmax
    moe = mlp_block(arch.expert_intermediate, k, own_input=True, lora=s.adapts_experts) + k * a * d + F32 * arch.experts
    if arch.shared_intermediate:
        moe += mlp_block(arch.shared_intermediate, 1, own_input=False)
    return total + (arch.dense_layers * dense + arch.moe_layers * moe) / arch.layers


def head_activation_bytes(s) -> float:
    """Per token, after the last layer: final norm, and the LM head's input when it trains."""
    a, d = s.act_bytes, s.arch.hidden
    trains_head = not s.adapted or "lm_head" in s.target_modules
    norm = (residual_bytes(s) * d + F32) if fused_norm(s) else F32 * d
    return norm + (2 * a * d if trains_head else 0)


def logits_bytes_per_element(s) -> float:
    """Per token per vocabulary entry, live at the start of backward (fused: the chunk's, see loss_bytes)."""
    a = s.act_bytes
    if s.loss_kind == "fused":
        return a  # each chunk's logits are written once, gradient in place
    if s.loss_kind == "chunked":
        if s.compile:  # compiled chunk loss saves only the logits; one chunk's fp32 work in flight
            return a + 12 / CHUNKED_CE_CHUNKS
        return a + 4 + 4 / CHUNKED_CE_CHUNKS  # logits + every chunk's fp32 log-softmax + one fp32 chunk
    if s.loss_kind == "lowp":  # cross-entropy in the compute dtype: as below, three logit-sized tensors in it
        return (a if s.holds_logits else 0) + 3 * a + (a if s.arch.logit_softcap else 0)
    # HF: the loss upcasts to fp32; at log-softmax's backward its fp32 output (saved) + the incoming
    # and outgoing fp32 gradients, plus the logits themselves if the loop still holds the model output.
    softcap = a if s.arch.logit_softcap else 0  # Gemma 2: tanh(logits / 30) saves its output
    return (a if s.holds_logits else 0) + 12 + softcap


def fused_chunk_rows(tokens: int, vocab: int, hidden: int) -> int:
    """Liger's chunk: the next power of 2 of ceil(tokens / ceil(V / d)) rows, so one chunk's logits (chunk × V)
    are about as large as the hidden states (tokens × d)."""
    chunks = -(-vocab // hidden)
    n = -(-tokens // chunks)
    return min(tokens, 1 << max(0, (n - 1).bit_length()))


def fused_chunk_tokens(s, tokens: int) -> int:
    """Liger's fused linear cross-entropy: chunk = next power of 2 of ceil(tokens / ceil(V / d)), so one
    chunk's logits (chunk × V) are about as large as the hidden states (tokens × d). A stack with a
    fixed chunk (the harness's train.loss=chunked) sets ``loss_chunk_tokens``."""
    if s.loss_chunk_tokens:
        return min(tokens, s.loss_chunk_tokens)
    return fused_chunk_rows(tokens, s.arch.vocab, s.arch.hidden)


def loss_bytes(s, tokens: int) -> float:
    """The loss's bytes live at the start of backward, for ``tokens`` scored positions.

    Standard losses hold ``tokens × vocab`` logits and their fp32 temporaries (logits_bytes_per_element).
    Fused linear cross-entropy (Liger's LigerFusedLinearCrossEntropy; Cut Cross-Entropy keeps less)
    never materializes them: forward computes, chunk by chunk, the logits and their gradient in place
    (chunk × V in the compute dtype + an fp32 upcast), and keeps only the gradient of the head's input
    (tokens × d) and, when the head trains, of its weight (V × d) for backward."""
    if s.loss_kind != "fused":
        return logits_bytes_per_element(s) * tokens * s.arch.vocab
    a, d, V = s.act_bytes, s.arch.hidden, s.arch.vocab
    head_trains = not s.adapted or "lm_head" in s.target_modules
    return a * tokens * d + fused_chunk_tokens(s, tokens) * V * (a + F32) + (V * d * s.weight_bytes if head_trains else 0)


def backward_working_bytes(s) -> float:
    """Per token: the gradients one layer's backward holds at once, on top of the saved activations.

    Gated MLP: the gradients of act(gate) and of up are formed while the product's gradient and the saved
    tensors they replace are still held: 2 × ff beyond the layer's saved tensors (plain MLP: 1 × ff);
    MoE: one expert's routed tokens at a time, + the shared expert. Attention: dq, dk, dv and the
    flash/memory-efficient kernels' fp32 dq accumulator; eager attention the S × S gradients of its softmax. Plus the residual gradient in and out (2 × d).
    Float8 linears add the fp8 casts of the matmul's input and gradient (1 B each)."""
    arch, a = s.arch, s.act_bytes
    m = residual_bytes(s)
    extra = 1 if arch.mlp == PLAIN else 2  # grads formed while the saved tensors they replace are still held
    # fused SwiGLU writes gate's and up's gradients over its saved inputs: only the product's gradient is new
    mlp = (1 if fused_swiglu(s) else extra) * m * arch.intermediate
    if arch.is_moe:  # HF loops over the experts: one expert's routed tokens (k/E of them on average) at a time
        moe = extra * m * (arch.expert_intermediate * arch.experts_per_tok / arch.experts + arch.shared_intermediate)
        mlp = max(mlp if arch.dense_layers else 0, moe)
    kv = arch.kv_dim if s.attention == "flash" or arch.mla else arch.q_dim
    attn = a * (arch.q_dim + 2 * kv) + F32 * arch.q_dim
    if eager_attention(s):  # the softmax's backward: the gradient of its output and of its input, S × S per head,
        # formed while the saved softmax output is still held (in its own dtype: gpt-oss bf16, generic eager fp32)
        attn += 2 * (arch.eager_softmax_bytes if arch.sdpa_unsupported else F32) * arch.heads * s.seq_len
    fp8 = (arch.hidden + max(arch.intermediate, arch.expert_intermediate)) if s.float8 else 0
    dora = 0
    if s.method == "dora":  # the magnitude's gradient: the incoming gradient × the base and LoRA results, in fp32
        outs = [o for m, (_, o) in arch.linears().items() if m in s.target_modules]
        dora = 2 * F32 * max(outs, default=0)
    return max(mlp, attn, dora) + 2 * residual_bytes(s) * arch.hidden + fp8


def lora_forward_transient_bytes(s) -> float:
    """Per token: what peft's LoRA forward holds for a moment beyond what it saves, for its widest adapted input.
    peft casts the input to the adapters' dtype (a copy where the dtypes differ) and dropout writes a new tensor
    from it; both live until lora_A has consumed them (lora_A saves its own compute-dtype cast, counted in the
    layer). With fp32 adapters and dropout that is 8 B an element of down_proj's input (ff wide): during the last
    layer's forward, or the recomputed layer's under checkpointing. The fused LoRA op (``--kernels lora``) has none."""
    if not s.adapted or fused_lora(s):
        return 0.0
    shapes = s.arch.linears()
    ad, drop = s.adapter_bytes, s.lora_dropout > 0
    widest = max((shapes[m][0] for m in s.target_modules if m in shapes), default=0)
    cast = ad * widest if ad != residual_bytes(s) else 0  # the input's own dtype: the residual stream's, the MLP's
    return cast + (ad * widest if drop else 0)


def adapter_temporaries_bytes(s) -> float:
    """Per token per layer: peft's `lora_B(...)` output and its `* scaling` copy, two d_out-wide
    tensors per adapted module, freed at once but leaving heap holes on CPU (see CPU_SLACK_FRAC)."""
    if not s.adapted:
        return 0.0
    shapes = s.arch.linears()
    return 2 * s.adapter_bytes * sum(shapes[m][1] for m in s.target_modules if m in shapes)


def selective_layer_bytes(s) -> float:
    """Per token, what selective (op-level) checkpointing keeps of one layer: the harness's policy
    (harness/checkpointing.py, torchtitan's "op" mode) saves attention's outputs and every matmul whose
    inner dimension exceeds 128 (cheaper to keep than to redo) and recomputes the rest (norms, RoPE,
    activations, products, LoRA's B). So: the layer's input, each base linear's output, lora_A's
    r-wide output (DoRA: + its second base matmul), attention's output and fp32 log-sum-exp per head;
    MoE: the router's logits and each routed token's expert outputs."""
    arch, a = s.arch, s.act_bytes
    mods = set(s.target_modules) - {"lm_head"}

    def outs(shapes: dict, lora: bool = True) -> float:
        # bitsandbytes' 4-bit matmul is its own operator, not aten.mm: the policy recomputes it
        base = 0 if s.method == "qlora" else sum(o for _, o in shapes.values())
        dora = s.method == "dora"
        adapted = sum(s.rank + (o if dora else 0) for k, (_, o) in shapes.items() if k in mods) if lora else 0
        return base + adapted

    # matmul outputs are in the compute dtype (autocast; bitsandbytes' 4-bit matmul too, cast up after)
    attn = a * outs(arch.attn_linears()) + a * arch.attn_out_dim + F32 * arch.heads
    dense = a * outs(arch.mlp_linears())
    total = residual_bytes(s) * arch.hidden + attn
    if not arch.is_moe:
        return total + dense
    moe = a * arch.experts_per_tok * outs(arch.mlp_linears(arch.expert_intermediate), lora=s.adapts_experts) + a * arch.experts
    if arch.shared_intermediate:
        moe += a * outs(arch.mlp_linears(arch.shared_intermediate))
    return total + (arch.dense_layers * dense + arch.moe_layers * moe) / arch.layers


def dora_weight_bytes(s) -> float:
    """Per layer (not per token): peft's DoRA forms each adapted module's merged weight (d_out × d_in, the
    compute dtype) every forward to take its column norms, and autograd keeps it for the magnitude's
    gradient. So DoRA's cost grows with the adapted weights, not only with the tokens."""
    if s.method != "dora":
        return 0.0
    arch, mods = s.arch, set(s.target_modules) - {"lm_head"}
    block = lambda shapes: sum(i * o for m, (i, o) in shapes.items() if m in mods)  # noqa: E731
    n = arch.layers * block(arch.attn_linears()) + arch.dense_layers * block(arch.mlp_linears())
    if arch.is_moe:
        experts = arch.experts * block(arch.mlp_linears(arch.expert_intermediate)) if s.adapts_experts else 0
        n += arch.moe_layers * (experts + (block(arch.mlp_linears(arch.shared_intermediate)) if arch.shared_intermediate else 0))
    return s.act_bytes * n / arch.layers


def expert_merge_bytes(s) -> float:
    """Per layer (not per token; MoE layers averaged over the stack): LoRA on stacked 3-D experts. On
    transformers >= 5 each MoE layer keeps its experts as one parameter per projection, and peft's
    all-linear reaches them through ``ParamWrapper`` (target_parameters), which adds B·A to the whole
    expert weight every forward: the merged E × (gate/up + down) weight, in the weight's dtype, is a new
    tensor that the experts' matmuls save for backward. gpt-oss's experts (``experts_fused`` on any
    version) are outside peft's expert mapping: not adapted, nothing merged. Selective checkpointing
    recomputes the merge (an add, not a matmul)."""
    arch = s.arch
    if not (s.method == "lora" and s.adapts_experts and arch.is_moe and s.stack == "hf"):
        return 0.0
    return s.act_bytes * arch.experts * arch.expert_params * arch.moe_layers / arch.layers


def dora_norm_bytes(s) -> float:
    """Not per token: DoRA's weight-norm working set while one module's forward runs. peft forms
    ``lora_B(lora_A(eye(d_in)))`` (the eye in the adapter dtype, saved by lora_A while the product
    lives), casts the product to the compute dtype and adds it to the base weight: the eye, the product
    and its cast at once, for the largest adapted module. A forward frees it before backward starts;
    full checkpointing recomputes each layer's forward during backward, on top of what backward holds."""
    if s.method != "dora" or s.ckpt != "full":
        return 0.0
    ad, a = s.adapter_bytes, s.act_bytes
    mods = set(s.target_modules) - {"lm_head"}
    return max((ad * i * i + (ad + a) * i * o for m, (i, o) in s.arch.linears().items() if m in mods), default=0.0)
