"""Build the tiny model's tokenizer (harness/assets/tiny-tokenizer/), committed to the repo.

A byte-level BPE with 1,024 entries: any text encodes (bytes are the fallback), and the
tasks' own words become single tokens, so tiny-model tests stay short and fast.
Re-run after the shipped task data changes:  python scripts/make_tiny_tokenizer.py
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from harness.paths import ASSETS_DIR, DATA_DIR

VOCAB_SIZE = 1024
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
# ChatML, as SmolLM2 uses, without a default system prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def corpus() -> list[str]:
    from harness.tasks import get_task
    from harness.spec import TaskSpec

    texts = []
    for name in ("tickets", "arithmetic"):
        try:
            # the sizes the shipped tokenizer was built from (TaskSpec's former defaults), for both tasks
            task = get_task(TaskSpec(name=name, seed=0, n_train=600, n_validation=100, n_test=200, difficulty=None,
                                     train_file=None, eval_file=None, metric="exact_match"))
        except ImportError:  # bootstrap: the task module is not written yet
            continue
        for ex in task.splits()["train"]:
            texts.append("\n".join(m["content"] for m in ex.messages))
    if not texts:
        texts = [p.read_text() for p in sorted(Path(__file__).resolve().parent.parent.rglob("*.py"))]
    for path in sorted(DATA_DIR.glob("*.txt")):
        texts.append(path.read_text())
    return texts


def main() -> None:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    out = ASSETS_DIR / "tiny-tokenizer"
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    print(f"wrote {out} ({len(fast)} tokens)")


if __name__ == "__main__":
    main()
