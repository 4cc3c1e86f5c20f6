#!/usr/bin/env python3
"""Writes the tokenizer reference data of tests/tokenizer/ with Hugging Face `tokenizers` and
`transformers` (pip install tokenizers transformers gguf).

1. SmolLM2-135M-Instruct: its Hugging Face repository is not reachable from the build machines, so
   the tokenizer is rebuilt from the default model's GGUF metadata (tokens, merges, token types,
   chat template) with the pipeline of the published tokenizer.json: no normalizer,
   Sequence[Digits(individual_digits), ByteLevel(add_prefix_space=False, use_regex=True)], BPE with no
   unk token, ByteLevel decoder, the 17 control tokens as special added tokens. The tokenizer.json
   (~2 MB) is written to the cache folder next to the model, not committed; the expected ids, decoded
   text and chat-template renderings go to tests/data/tokenizer/smollm2/reference.json.
2. Small tokenizers trained here on the sample text, one per pre-tokenizer family qrt implements
   (GPT-2 with added-token flags, Llama-3 with ignore_merges and a BOS post-processor, Qwen2 with NFC,
   SmolLM digits), committed as tests/data/tokenizer/<name>/tokenizer.json with their reference.json,
   so the tests cover every family without the model.

The trained vocabularies are not bit-for-bit reproducible across runs (the BPE trainer breaks some
ties in hash order); each committed reference.json matches the tokenizer.json written with it.

Usage: python3 tools/make_tokenizer_reference.py [--gguf PATH]
"""
import argparse
import json
import os
import sys

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "tokenizer")

GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# Meta's Llama-3-Instruct template (the 3.0 form, no date block).
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
# A Qwen2-Instruct style ChatML template, written with "\n" escapes inside the Jinja strings.
QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

# Edge cases beyond the sample file; JSON keeps their bytes exact (CR, NBSP, combining marks).
EXTRA_CASES = [
    ("empty", ""),
    ("one_space", " "),
    ("spaces_only", "     "),
    ("newlines_only", "\n\n\n"),
    ("crlf", "line one\r\nline two\r\n\r\n  indented\n\tx\r"),
    ("leading_space", " hello world"),
    ("unicode_spaces", "a\u00a0b\u3000c\u2003d \u2028e\u0085f\u000bg"),
    ("combining_marks", "e\u0301 cafe\u0301 A\u030a n\u0303 \u1100\u1161\u11a8 \u212b \ufb01 o\u0308\u0301"),
    ("contractions", "'s 'S 'RE 'Re 'll 'LL 'd 've 'VE 'm 't ''s 'x it's IT'S"),
    ("contractions_case_folding", "'\u017fa x'\u017f \u017f's '\u212aa 'LLx"),
    ("digits", "1234567 \u0663\u0664\u0665 \u2460\u2461 1.5 x2y33z444 \u00bd"),
    ("long_word", "a" * 300 + " " + "ab" * 150 + " " + "\u4e2d" * 100),
    ("specials_adjacent", "<|im_start|><|im_end|>x<|endoftext|> <|im_start|>  <|im_end|>\n"),
    ("punctuation", "!!! ??? ... --- (parens) [brackets] {braces} @#$%^&*_+=|\\/~`"),
    ("mixed_scripts", "abc\u0430\u0431\u0432\u4e2d\u6587123\u3042\u3044"),
    ("emoji_zwj", "\U0001F469\u200d\U0001F4BB\U0001F3F3\ufe0f\u200d\U0001F308 \u200b zero\u200bwidth"),
    ("newline_space_mix", "a\n \n  b \n\nc  \n"),
    ("special_like_text", "<|im_start <|im_end| |>"),
    ("llama_specials", "<s>Hello</s> <s> world<unk> </s>"),
    ("leading_spaces_after_special", "<s>  two spaces<s> one\n<s>\tx"),
]

CHAT_CASES = [
    {"name": "two_turns", "add_generation_prompt": True, "messages": [
        {"role": "user", "content": "Hello! Who are you?"},
        {"role": "assistant", "content": "I'm a small language model."},
        {"role": "user", "content": "What is the capital of France?"}]},
    {"name": "with_system", "add_generation_prompt": True, "messages": [
        {"role": "system", "content": "You answer in French."},
        {"role": "user", "content": "  Good morning  "},
        {"role": "assistant", "content": "Bonjour !"},
        {"role": "user", "content": "How are you?"}]},
    {"name": "no_generation_prompt", "add_generation_prompt": False, "messages": [
        {"role": "user", "content": "Say 3.14"},
        {"role": "assistant", "content": "3.14"}]},
]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def byte_level(text):
    table = bytes_to_unicode()
    return "".join(table[b] for b in text.encode("utf-8"))


def sample_text():
    with open(os.path.join(DATA, "multilingual.txt"), encoding="utf-8", newline="") as f:
        return f.read()


# Characters that meet at the edges of the pre-tokenizer alternatives: spaces of several kinds, CR/LF,
# apostrophes and contraction letters (with U+017F long s and U+212A Kelvin, which case-fold to ASCII),
# digits of several scripts, punctuation, letters, marks, emoji, special-token text.
RANDOM_POOL = ([" "] * 6 + ["\n"] * 3 + ["\r", "\t", "\u00a0", "\u3000", "\u2003", "\u000b"]
               + ["'"] * 4 + list("stmdrevlSTMDREVL") + ["\u017f", "\u212a", "k"]
               + list("0123456789") + ["\u0663", "\u00bd", "\u2460", "\uff13"]
               + list(".,;:!?-_()[]{}<>|/\\\"#@$%^&*+=~`") + list("abcxyzABCXYZ")
               + ["\u00e9", "\u00df", "\u0436", "\u4e2d", "\u3042", "\u0645", "\u0301", "\u0308"]
               + ["\U0001F600", "\u200d", "\ufe0f", "<|im_start|>", "<|im_end|>", "<|endoftext|>"])


def random_cases(count=150, seed=1234):
    import random
    rng = random.Random(seed)
    out = []
    for k in range(count):
        n = rng.randint(1, 40)
        out.append(("random_%03d" % k, "".join(rng.choice(RANDOM_POOL) for _ in range(n))))
    return out


def cases():
    return [("multilingual_sample", sample_text())] + EXTRA_CASES + [
        ("sample_line_%02d" % i, line) for i, line in enumerate(sample_text().split("\n")) if line] + random_cases()


def reference(tk, chat_template=None, bos_token=None, eos_token=None, description=""):
    out = {"description": description, "cases": [], "chat": []}
    for name, text in cases():
        enc = tk.encode(text, add_special_tokens=False).ids
        enc_special = tk.encode(text, add_special_tokens=True).ids
        out["cases"].append({
            "name": name, "text": text, "ids": enc,
            "ids_add_special": enc_special,
            "decoded": tk.decode(enc, skip_special_tokens=False),
            "decoded_skip_special": tk.decode(enc, skip_special_tokens=True),
        })
    if chat_template:
        from transformers import PreTrainedTokenizerFast
        fast = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=bos_token, eos_token=eos_token)
        fast.chat_template = chat_template
        for case in CHAT_CASES:
            text = fast.apply_chat_template(case["messages"], tokenize=False,
                                            add_generation_prompt=case["add_generation_prompt"])
            out["chat"].append(dict(case, text=text, ids=tk.encode(text, add_special_tokens=False).ids))
    return out


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    print("wrote %s (%d bytes)" % (os.path.relpath(path, ROOT), os.path.getsize(path)))


# ---- 1. SmolLM2 from the GGUF metadata ------------------------------------------------------------

def smollm2_from_gguf(path):
    import gguf
    reader = gguf.GGUFReader(path)

    def field(key):
        f = reader.fields[key]
        if f.types[0] == gguf.GGUFValueType.ARRAY:
            return [f.contents(i) for i in range(len(f.data))]
        return f.contents()

    assert field("tokenizer.ggml.model") == "gpt2" and field("tokenizer.ggml.pre") == "smollm"
    tokens = field("tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ")) for m in field("tokenizer.ggml.merges")]
    types = field("tokenizer.ggml.token_type")
    vocab = {t: i for i, t in enumerate(tokens)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, fuse_unk=False, byte_fallback=False))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    tk.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tk.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    tk.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                           for i, t in enumerate(types) if t == 3])
    bos = tokens[field("tokenizer.ggml.bos_token_id")]
    eos = tokens[field("tokenizer.ggml.eos_token_id")]
    return tk, field("tokenizer.chat_template"), bos, eos


# ---- 2. small trained tokenizers ------------------------------------------------------------------

def training_corpus():
    text = sample_text()
    extra = "\n".join(t for _, t in EXTRA_CASES)
    # A little more English so that common words get merged.
    english = ("the of and to in is that it for was on are as with his they at be this from have or by "
               "one had not but what all were when we there can an your which their said if do will each "
               "about how up out them then she many some so these would other into has more her two like "
               "him see time could no make than first been its who now people my made over did down only "
               "way find use may water long little very after words called just where most know ") * 3
    return [text, extra, english, text.lower()]


def train(pre_tokenizer, specials, vocab_size=900, normalizer=None):
    tk = Tokenizer(models.BPE())
    if normalizer is not None:
        tk.normalizer = normalizer
    tk.pre_tokenizer = pre_tokenizer
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=specials)
    tk.train_from_iterator(training_corpus(), trainer=trainer)
    return tk


def with_model_fields(tk, **fields):
    """Sets BPE model fields the Python API does not expose (ignore_merges) through the JSON."""
    j = json.loads(tk.to_str())
    j["model"].update(fields)
    return Tokenizer.from_str(json.dumps(j))


def add_vocab_words(tk, words):
    """Adds whole words to the BPE vocabulary without merges (so only ignore_merges finds them)."""
    j = json.loads(tk.to_str())
    vocab = j["model"]["vocab"]
    for w in words:
        key = byte_level(w)
        if key not in vocab:
            vocab[key] = max(vocab.values()) + 1
    return Tokenizer.from_str(json.dumps(j))


def save_tiny(name, tk, description, string_merges=False, **chat):
    folder = os.path.join(DATA, name)
    os.makedirs(folder, exist_ok=True)
    tk.save(os.path.join(folder, "tokenizer.json"))
    if string_merges:
        # The older "a b" spelling of merges (GPT-2/Llama-3 era files); the loader reads both.
        with open(os.path.join(folder, "tokenizer.json"), encoding="utf-8") as f:
            j = json.load(f)
        j["model"]["merges"] = [" ".join(m) for m in j["model"]["merges"]]
        with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False, indent=2)
        tk = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    print("wrote %s (%d bytes)" % (os.path.relpath(os.path.join(folder, "tokenizer.json"), ROOT),
                                  os.path.getsize(os.path.join(folder, "tokenizer.json"))))
    if chat.get("chat_template"):
        cfg = {"bos_token": chat.get("bos_token"), "eos_token": chat.get("eos_token"),
               "chat_template": chat["chat_template"]}
        write_json(os.path.join(folder, "tokenizer_config.json"), cfg)
    write_json(os.path.join(folder, "reference.json"), reference(tk, description=description, **chat))


def tiny_tokenizers():
    # GPT-2: ByteLevel regex with add_prefix_space, added tokens with lstrip / rstrip / single_word.
    tk = train(pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True), ["<|endoftext|>"])
    tk.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False),
                           AddedToken("[SEP]", rstrip=True, special=True, normalized=False)])
    tk.add_tokens([AddedToken("hello world", single_word=True, normalized=False),
                   AddedToken("fox", single_word=True, normalized=True),
                   AddedToken("im_start", normalized=True)])
    tk.post_processor = processors.RobertaProcessing(("[SEP]", tk.token_to_id("[SEP]")),
                                                     ("<|endoftext|>", 0))
    save_tiny("tiny_gpt2", tk, "GPT-2 ByteLevel(add_prefix_space), added-token flags, Roberta post-processor",
              string_merges=True)

    # Llama-3: Split(regex) + ByteLevel(use_regex=False), ignore_merges, BOS template, merges as pairs.
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tk = train(pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)]), specials)
    tk = add_vocab_words(tk, ["fibonacci", " Straße", " булок", "12"])
    tk = with_model_fields(tk, ignore_merges=True)
    tk.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
        special_tokens=[("<|begin_of_text|>", tk.token_to_id("<|begin_of_text|>"))])
    save_tiny("tiny_llama3", tk, "Llama-3 Split regex, ignore_merges, TemplateProcessing BOS",
              chat_template=LLAMA3_TEMPLATE, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")

    # Qwen2: NFC normalizer + Split(regex with single digits) + ByteLevel(use_regex=False).
    from tokenizers import normalizers
    tk = train(pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)]),
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], normalizer=normalizers.NFC())
    save_tiny("tiny_qwen2", tk, "Qwen2 NFC + Split regex (single digits)",
              chat_template=QWEN2_TEMPLATE, bos_token=None, eos_token="<|im_end|>")

    # SmolLM: Digits(individual) + ByteLevel(use_regex=True), ChatML specials.
    tk = train(pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)]),
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    save_tiny("tiny_smollm", tk, "SmolLM Digits(individual) + ByteLevel")


# ---- 3. SentencePiece-style BPE (Llama-2 / Mistral / TinyLlama) ----------------------------------

SPM_SPECIALS = ["<unk>", "<s>", "</s>"]


def train_spm():
    """A SentencePiece-style BPE vocabulary: <unk> <s> </s>, the 256 <0xXX> byte tokens, then pieces.
    limit_alphabet leaves rare characters out, so byte fallback is exercised."""
    tk = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=1100, min_frequency=2, show_progress=False, limit_alphabet=100,
                                  special_tokens=SPM_SPECIALS + ["<0x%02X>" % b for b in range(256)])
    tk.train_from_iterator(training_corpus(), trainer=trainer)
    j = json.loads(tk.to_str())
    return j["model"]["vocab"], [tuple(m) for m in j["model"]["merges"]]


def spm_tokenizers():
    from tokenizers import normalizers
    vocab, merges = train_spm()
    specials = [AddedToken(t, normalized=False, special=True) for t in SPM_SPECIALS]

    # Legacy Llama-2 / TinyLlama tokenizer.json: Prepend + Replace normalizers, no pre-tokenizer.
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tk.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    tk.add_special_tokens(specials)
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                      special_tokens=[("<s>", vocab["<s>"])])
    save_tiny("tiny_llama2", tk, "legacy SentencePiece BPE: Prepend/Replace normalizers, byte fallback",
              string_merges=True)

    # What transformers' LlamaTokenizer builds today (Mistral, newer Llama-2 files): Metaspace "first".
    from transformers import LlamaTokenizer
    lt = LlamaTokenizer(vocab=vocab, merges=merges)
    save_tiny("tiny_mistral", lt.backend_tokenizer, "SentencePiece BPE as transformers' LlamaTokenizer: Metaspace")

    # Metaspace(prepend_scheme "always", split) with the Metaspace decoder (older tokenizer.json files).
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tk.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tk.add_special_tokens(specials)
    save_tiny("tiny_spm_split", tk, "SentencePiece BPE with Metaspace(always, split) and the Metaspace decoder")

    # A GGUF SentencePiece vocabulary (tokenizer.ggml.model "llama": scores, no merges), and what
    # transformers' GGUF converter makes of it.
    from transformers.integrations.gguf.gguf_tokenizer_mapping import add_gguf_special_tokens, sentencepiece_tokenizer
    tokens = [None] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    types, scores = [], []
    for i, t in enumerate(tokens):
        if t == "<unk>":
            types.append(2)
        elif t in SPM_SPECIALS:
            types.append(3)
        elif t.startswith("<0x") and len(t) == 6:
            types.append(6)
        else:
            types.append(1)
        scores.append(0.0 if types[-1] != 1 else -float(i))
    tdict = {"tokens": tokens, "scores": scores, "token_type": types, "tokenizer_type": "llama"}
    hf = add_gguf_special_tokens(sentencepiece_tokenizer(tdict), tdict)
    folder = os.path.join(DATA, "tiny_spm_gguf")
    write_json(os.path.join(folder, "vocab.json"), {
        "tokens": tokens, "scores": scores, "token_type": types,
        "bos_token_id": vocab["<s>"], "eos_token_id": vocab["</s>"], "unknown_token_id": vocab["<unk>"]})
    write_json(os.path.join(folder, "reference.json"),
               reference(hf.backend_tokenizer, description="GGUF SentencePiece vocabulary (scores, no merges) "
                         "through transformers' GGUF converter"))


def main():
    ap = argparse.ArgumentParser()
    default_gguf = os.environ.get("QRT_DEFAULT_MODEL") or os.path.expanduser(
        "~/.cache/qrt/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--gguf", default=default_gguf, help="the default model (scripts/fetch-model.sh)")
    args = ap.parse_args()

    tiny_tokenizers()
    spm_tokenizers()

    if not os.path.exists(args.gguf):
        sys.exit("no GGUF at %s: run scripts/fetch-model.sh (SmolLM2 reference not written)" % args.gguf)
    tk, template, bos, eos = smollm2_from_gguf(args.gguf)
    json_path = os.path.join(os.path.dirname(args.gguf), "SmolLM2-135M-Instruct.tokenizer.json")
    tk.save(json_path)
    size = os.path.getsize(json_path)
    print("wrote %s (%d bytes; not committed: too large for the repository)" % (json_path, size))
    write_json(os.path.join(DATA, "smollm2", "reference.json"),
               reference(tk, chat_template=template, bos_token=bos, eos_token=eos,
                         description="SmolLM2-135M-Instruct tokenizer rebuilt from the GGUF metadata "
                                     "with the published tokenizer.json pipeline"))


if __name__ == "__main__":
    main()
