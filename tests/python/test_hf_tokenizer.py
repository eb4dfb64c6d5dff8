"""Python side of the Hugging Face export test (tests/io/test_export.cpp).

    test_hf_tokenizer.py FOLDER EXPECTED_JSON

FOLDER is a model folder comba-export wrote with --tokenizer; EXPECTED_JSON holds what
the C++ Tokenizer made of a few strings: {"texts": [...], "ids": [[...], ...], "bos_id",
"eos_id", "unk_id", "model_max_length", "config_bos_id", "config_eos_id"}. The folder must
open with transformers.AutoTokenizer (the slow SentencePiece class and, where protobuf
is there for the conversion, the fast one) and encode every string to the same ids.

Exit status 77 means "skip": transformers or sentencepiece is not importable here.
"""
import json
import sys

try:
    import sentencepiece  # noqa: F401  (LlamaTokenizer reads tokenizer.model with it)
    from transformers import AutoTokenizer, GenerationConfig
except ImportError as error:  # the C++ test turns this into GTEST_SKIP
    print(f"skip: {error}")
    sys.exit(77)

try:
    import google.protobuf  # noqa: F401  (the fast tokenizer's conversion needs it)
    HAVE_PROTOBUF = True
except ImportError:
    HAVE_PROTOBUF = False


def check(tokenizer, expected, label):
    failures = []
    for text, ids in zip(expected["texts"], expected["ids"]):
        got = tokenizer.encode(text)
        if got != ids:
            failures.append(f"{label}: {text!r}: transformers {got}, comba {ids}")
    for name in ("bos", "eos", "unk"):
        got = getattr(tokenizer, f"{name}_token_id")
        if got != expected[f"{name}_id"]:
            failures.append(f"{label}: {name}_token_id {got}, comba {expected[name + '_id']}")
    if tokenizer.model_max_length != expected["model_max_length"]:
        failures.append(f"{label}: model_max_length {tokenizer.model_max_length}, "
                        f"expected {expected['model_max_length']}")
    return failures


def main():
    folder, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path, encoding="utf-8") as f:
        expected = json.load(f)
    failures = check(AutoTokenizer.from_pretrained(folder, use_fast=False), expected, "slow")
    if HAVE_PROTOBUF:
        failures += check(AutoTokenizer.from_pretrained(folder), expected, "fast")
    generation = GenerationConfig.from_pretrained(folder)
    if generation.bos_token_id != expected["config_bos_id"] or generation.eos_token_id != expected["config_eos_id"]:
        failures.append(f"generation_config: bos {generation.bos_token_id} eos {generation.eos_token_id}, expected "
                        f"{expected['config_bos_id']} {expected['config_eos_id']}")
    for line in failures:
        print(line)
    print("ok" if not failures else f"{len(failures)} mismatch(es)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
