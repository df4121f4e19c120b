"""The model card: README.md next to the weights, saying how the model was made."""

from __future__ import annotations

from pathlib import Path


def render(info: dict) -> str:
    """Markdown model card from the facts a training run collected."""
    lines = ["---", f"license: {info.get('license') or 'other'}"]
    if info.get("language"):
        lines.append(f"language: {info['language']}")
    lines += ["library_name: transformers", "pipeline_tag: text-generation",
              "tags: [gpt2, gptterm]", "---", "", f"# {info['name']}", ""]
    if info.get("description"):
        lines += [info["description"], ""]
    kind = "Finetuned from " + f"`{info['base']}`" if info.get("base") else "Trained from scratch"
    lines += [(f"{kind} with `gptterm {info['mode']}`: a GPT-2 (`GPT2LMHeadModel`) with "
               f"{info['parameters']:,} parameters, {info['n_layer']} layers, width "
               f"{info['n_embd']}, {info['n_head']} heads, context {info['n_positions']} "
               f"tokens, vocabulary {info['vocab_size']:,} ({info['tokenizer']})."), ""]
    lines += ["## Recipe", "", "```sh", info["recipe"], "```", ""]
    if info.get("script"):
        lines += [f"Reproduce it with `{info['script']}`.", ""]
    lines += ["## Training data", ""]
    for source in info.get("sources") or []:
        lines.append(f"- {source}")
    for corpus in info["corpus"]:
        lines.append(f"- `{corpus['file']}`: {corpus['chars']:,} characters")
    lines += [(f"- {info['train_tokens']:,} training tokens, {info['val_tokens']:,} "
               f"validation tokens ({info['val_source']})"), ""]
    if info.get("attribution"):
        lines += ["## License and attribution", "", info["attribution"], ""]
    lines += ["## Training", "",
              (f"- steps: {info['steps']:,} (batch {info['batch_size']} x {info['block']} "
               f"tokens, {info['epochs_done']:.2f} epochs), learning rate {info['lr']}"),
              (f"- precision: {info['precision']}, device: {info['device']}, "
               f"time: {info['seconds']:.0f} s"),
              f"- weights stored as {info['save_dtype']} safetensors", ""]
    lines += ["## Validation", "", "| epoch | step | train loss | val loss | val perplexity |",
              "|---|---|---|---|---|"]
    if info.get("before") is not None:
        lines.append(f"| base (before) | 0 | - | {info['before']['loss']:.4f} | "
                     f"{info['before']['perplexity']:.2f} |")
    for row in info["history"]:
        lines.append(f"| {row['epoch']} | {row['step']} | {row['train_loss']:.4f} | "
                     f"{row['val_loss']:.4f} | {row['val_perplexity']:.2f} |")
    lines += ["", "## Sample", "", (f"Prompt `{info['sample_prompt']}` (top-k 40, "
                                     "temperature 0.8):"), "", "```text", info["sample"],
              "```", ""]
    return "\n".join(lines)


def write(out: Path, info: dict) -> None:
    (out / "README.md").write_text(render(info), encoding="utf-8")
