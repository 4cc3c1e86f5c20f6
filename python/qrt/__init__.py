"""qrt: quantized LLM inference with kernels chosen, configured and tuned at run time.

    import qrt
    model = qrt.Model("SmolLM2-135M-Instruct.Q4_1.gguf")
    print(model.generate("The capital of France is", max_new_tokens=16))
    for piece in model.stream("Why is the sky blue?", chat=True):
        print(piece, end="", flush=True)

Models are Hugging Face folders (config.json, safetensors, tokenizer.json) or .gguf files. Errors
raise qrt.Error with the message the `qrt` command prints. Compute runs without the GIL.
"""

import json
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from ._qrt import Error, __version__
from . import _qrt

__all__ = ["Error", "Model", "Tokenizer", "__version__"]


class Tokenizer:
    """The model's tokenizer (the same ids as Hugging Face `tokenizers`)."""

    def __init__(self, model: "_qrt.Model"):
        self._model = model

    def encode(self, text: str, add_special: bool = True) -> List[int]:
        """Token ids of `text`; add_special adds the BOS/EOS the tokenizer asks for."""
        return self._model.encode(text, add_special)

    def decode(self, ids: Sequence[int], skip_special: bool = False) -> str:
        """Text of `ids` (ids outside the vocabulary are skipped)."""
        return self._model.decode(list(ids), skip_special)

    @property
    def vocab_size(self) -> int:
        return self._model.vocab_size()


class Model:
    """A model opened for inference, with one KV cache that its calls share.

    path     a Hugging Face folder or a .gguf file ("" = the default model of scripts/fetch-model.sh)
    device   "auto" (the first CUDA GPU when one is present, else the CPU), "cpu" or "cuda:N"
    backend  the kernel backend of every quantized layer ("auto", "cpu_simd", "cuda_marlin", ...)
    config   the runtime config: a dict of the --config file's fields (docs/CONFIG.md), or the
             path of such a file
    """

    def __init__(self, path: Union[str, os.PathLike], device: str = "auto", backend: Optional[str] = None,
                 config: Union[None, Dict[str, Any], str, os.PathLike] = None):
        config_file = ""
        fields: Dict[str, Any] = {}
        if isinstance(config, dict):
            fields = dict(config)
        elif config is not None:
            config_file = os.fspath(config)
        if backend is not None:
            fields["backend"] = backend
        self._model = _qrt.Model(os.fspath(path), device, config_file, json.dumps(fields) if fields else "")
        self.tokenizer = Tokenizer(self._model)

    def info(self) -> Dict[str, Any]:
        """Architecture, sizes, quantization, device and lengths of the model as opened."""
        return json.loads(self._model.info_json())

    def plan(self) -> List[Dict[str, Any]]:
        """The kernel plan of every quantized linear: the "layers" of `qrt plan MODEL --json`."""
        return json.loads(self._model.plan_json())["layers"]

    def generate(self, prompt: str, max_new_tokens: int = 128, temperature: float = 0.0, top_k: int = 0,
                 top_p: float = 1.0, seed: int = 0, chat: bool = False) -> str:
        """The text generated after `prompt` (greedy unless temperature > 0). chat=True puts the
        prompt through the model's chat template as a user message. Ends at a stop token, after
        max_new_tokens tokens, or at the end of the KV cache."""
        return self._model.generate(prompt, max_new_tokens, temperature, top_k, top_p, seed, chat)

    def stream(self, prompt: str, max_new_tokens: int = 128, temperature: float = 0.0, top_k: int = 0,
               top_p: float = 1.0, seed: int = 0, chat: bool = False) -> Iterator[str]:
        """generate() as an iterator of text pieces; other calls on the model wait for its end or
        for close()."""
        return self._model.stream(prompt, max_new_tokens, temperature, top_k, top_p, seed, chat)

    def perplexity(self, text: str, ctx: int = 512) -> float:
        """Perplexity of `text` by `qrt perplexity`'s method (windows of ctx tokens, the second
        half of each scored): the figure the command prints for the same text and ctx."""
        return self._model.perplexity(text, ctx)

    def logits(self, tokens: Sequence[int]):
        """numpy float32 array [len(tokens), vocab]: the next-token logits after each position,
        from an empty cache."""
        return self._model.logits(list(tokens))
