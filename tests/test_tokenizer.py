"""Tests for ``course_lib.tokenizer`` (chapter 2), in the spirit of minbpe's test file: one file,
parametrised over every implementation, including the check that the pure-Python GPT-4
tokenizer reproduces tiktoken's ``cl100k_base`` exactly.

tiktoken is used two ways, both offline: ``tiktoken.get_encoding("cl100k_base")`` reading the
cache that ``install_cl100k_cache`` writes (with tiktoken's downloader replaced by one that
fails, so the test proves nothing was fetched), and ``cl100k_base()``, built from the shipped
ranks. Everything that writes goes to ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import random

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry

from course_lib import tokenizer as tk
from course_lib.assets import load_sample_text
from course_lib.tokenizer import (
    GPT4_SPECIAL_TOKENS,
    GPT4_SPLIT_PATTERN,
    BasicTokenizer,
    GPT4Tokenizer,
    RegexTokenizer,
    Tokenizer,
    best_pair,
    get_stats,
    merge,
    train_fast,
    train_plain,
)

# --------------------------------------------------------------------------------------------
# Texts: every kind of string the issue names
# --------------------------------------------------------------------------------------------

TEXTS = {
    "empty": "",
    "one_char": "a",
    "hello": "hello world!!!? (안녕하세요!) lol123 😉",
    "emoji": "I ❤️ tokens 🙂👍🏽👩‍👩‍👧‍👦 🏳️‍🌈 🧑🏿‍🚀 👋🏻👋🏼👋🏽👋🏾👋🏿 🇫🇷🇯🇵",
    "cjk": "日本語のテキストを分割します。中文文本，한국어 문장입니다。",
    "scripts": "Привет, мир! مرحبا بالعالم. नमस्ते दुनिया। Γειά σου κόσμε. שלום עולם",
    "mixed": "naïve café Zürich — «quotes» ‘single’ “double” … ½ ² ℃ ∑∞ ﬁ Ⅻ",
    "code": ("def f(x):\n\tif x > 0:\n\t\treturn x ** 2  # square\n    else:\n"
             "        return [i for i in range(10)]\n\n\nclass A(B):\n    pass\n"),
    "whitespace": "a" + " " * 40 + "b\n\n\n\n   \t\t  \n" + " " * 7 + "\t" * 5 + "c   ",
    "trailing_ws": "ends with spaces   ",
    "newlines": "line one\r\nline two\r\n\r\n\rline three\n\r\n  \r\n\tx\r",
    "numbers": "0 12 345 6789 12345 123456 1234567 3.14159 1,000,000 2024-05-17 0x1F 1e-10 ١٢٣ ٤",
    "contractions": "I'm you're he's we'd they'll DON'T WE'VE I'M you'RE we'Ve it'S 'tis o'clock",
    "special_looking": "<|endoftext|> and <|fim_prefix|> but also <|endoftext and |> <|unknown|>",
    "punctuation": "!!!??? ... --- ___ *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}}",
    "repeats": "aaaaaa bbbbbbbbbbbbbbbb " + "ab" * 50 + " " + "x" * 300,
    "control": "tab\there nul\x00 bell\x07 esc\x1b del\x7f nbsp\u00a0 zwsp\u200b bom\ufeff",
}
_ALPHABET = ("abcxyz ABC  \t\n\r0123456789.,!?'\"-_()<>|/\\éüßñ漢字日本語한국ä"
             "😀👍🏽\u200d🌈Ωжهिंअ\u0301\u00a0")


def random_texts(n: int, seed: int = 0, max_len: int = 40) -> list[str]:
    """Seeded random strings over a mixed alphabet (scripts, digits, whitespace, emoji parts)."""
    rng = random.Random(seed)
    return ["".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(max_len)))
            for _ in range(n)]


# --------------------------------------------------------------------------------------------
# Shared fixtures: GPT-4 (slow to build, cached in-process), tiktoken offline, trained tokenizers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def gpt4():
    return GPT4Tokenizer()


@pytest.fixture(scope="session")
def tiktoken_cached(tmp_path_factory):
    """``tiktoken.get_encoding("cl100k_base")`` made to work offline by ``install_cl100k_cache``."""

    def no_download(blobpath):
        raise AssertionError(f"tiktoken tried to download {blobpath}; the cache was not used")

    cache = tmp_path_factory.mktemp("tiktoken_cache")
    path = tk.install_cl100k_cache(cache)
    assert path.name == hashlib.sha1(tk.CL100K_URL.encode()).hexdigest()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        mp.setattr(tiktoken.load, "read_file", no_download)
        mp.delitem(tiktoken.registry.ENCODINGS, "cl100k_base", raising=False)
        enc = tiktoken.get_encoding("cl100k_base")
    return enc


@pytest.fixture(scope="session")
def tiktoken_built():
    return tk.cl100k_base()


TRAIN_TEXT = load_sample_text(60_000) + "\n" + "".join(TEXTS.values())
SPECIALS = {"<|endoftext|>": 1000, "<|user|>": 1001}


@pytest.fixture(scope="session")
def trained():
    """A Basic and a Regex tokenizer trained on a small text (fast trainer), the Regex one with
    special tokens."""
    basic = BasicTokenizer()
    basic.train(TRAIN_TEXT[:20_000], 400)
    regex_tok = RegexTokenizer()
    regex_tok.train(TRAIN_TEXT, 700)
    regex_tok.register_special_tokens(dict(SPECIALS))
    return {"basic": basic, "regex": regex_tok}


@pytest.fixture(params=["basic", "regex", "gpt4"])
def any_tokenizer(request, trained, gpt4):
    """Every implementation, for the tests that hold for all of them."""
    return gpt4 if request.param == "gpt4" else trained[request.param]


# --------------------------------------------------------------------------------------------
# The two operations
# --------------------------------------------------------------------------------------------


def test_get_stats():
    assert get_stats([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert get_stats([]) == {} and get_stats([7]) == {}
    assert get_stats([5, 5, 5, 5]) == {(5, 5): 3}
    counts = {(1, 2): 10}
    assert get_stats([1, 2], counts) is counts and counts == {(1, 2): 11}


def test_merge():
    assert merge([1, 2, 3, 1, 2], (1, 2), 4) == [4, 3, 4]
    assert merge([5, 5, 5], (5, 5), 6) == [6, 5]  # overlapping: greedy from the left
    assert merge([5, 5, 5, 5], (5, 5), 6) == [6, 6]
    assert merge([], (1, 2), 3) == [] and merge([1], (1, 2), 3) == [1]
    assert merge([2, 1, 2, 1], (1, 2), 9) == [2, 9, 1]


def test_best_pair_breaks_ties_by_smallest_pair():
    assert best_pair({(3, 4): 2, (1, 9): 2, (2, 2): 1}) == (1, 9)
    assert best_pair({(3, 4): 5, (1, 9): 2}) == (3, 4)


# --------------------------------------------------------------------------------------------
# GPT-4: the pure-Python encoder gives exactly tiktoken's ids
# --------------------------------------------------------------------------------------------


def test_install_cl100k_cache_writes_tiktokens_file(tmp_path):
    path = tk.install_cl100k_cache(tmp_path / "cache")
    assert path.parent == tmp_path / "cache"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == tk.CL100K_SHA256
    assert tk.install_cl100k_cache(tmp_path / "cache") == path  # idempotent


def test_both_tiktoken_encodings_agree(tiktoken_cached, tiktoken_built):
    assert tiktoken_cached.n_vocab == tiktoken_built.n_vocab == 100277
    assert tiktoken_cached._special_tokens == tiktoken_built._special_tokens == GPT4_SPECIAL_TOKENS
    assert tiktoken_cached._pat_str == tiktoken_built._pat_str == GPT4_SPLIT_PATTERN
    text = "".join(TEXTS.values())
    assert tiktoken_cached.encode_ordinary(text) == tiktoken_built.encode_ordinary(text)


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_gpt4_matches_tiktoken(gpt4, tiktoken_cached, tiktoken_built, text):
    ours = gpt4.encode(text, disallowed_special=())
    assert ours == tiktoken_cached.encode(text, disallowed_special=())
    assert ours == tiktoken_built.encode(text, disallowed_special=())
    assert gpt4.encode_ordinary(text) == ours


def test_gpt4_matches_tiktoken_on_random_strings(gpt4, tiktoken_cached):
    for text in random_texts(400, seed=1):
        assert gpt4.encode_ordinary(text) == tiktoken_cached.encode_ordinary(text), repr(text)


def test_gpt4_matches_tiktoken_on_the_sample_text(gpt4, tiktoken_built):
    text = load_sample_text(30_000)
    assert gpt4.encode_ordinary(text) == tiktoken_built.encode_ordinary(text)


@pytest.mark.slow
def test_gpt4_matches_tiktoken_on_the_whole_sample_text(gpt4, tiktoken_built):
    text = load_sample_text()
    assert gpt4.encode_ordinary(text) == tiktoken_built.encode_ordinary(text)


@pytest.mark.slow
def test_gpt4_matches_tiktoken_on_many_random_strings(gpt4, tiktoken_built):
    texts = random_texts(3000, seed=2, max_len=200)
    for text in texts:
        assert gpt4.encode_ordinary(text) == tiktoken_built.encode_ordinary(text), repr(text)


def _cl100k_texts(n: int, seed: int) -> list[str]:
    """Strings glued from 1-5 random cl100k tokens: where a merge-based encoder could part ways
    with tiktoken's rank-based one (a pair of tokens whose bytes form a token made differently)."""
    rng = random.Random(seed)
    tokens = []
    for token in tk.load_cl100k_ranks():
        try:
            tokens.append(token.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    return ["".join(rng.choice(tokens) for _ in range(rng.randrange(1, 6))) for _ in range(n)]


def test_gpt4_matches_tiktoken_on_glued_tokens(gpt4, tiktoken_built):
    for text in _cl100k_texts(3000, seed=7):
        assert gpt4.encode_ordinary(text) == tiktoken_built.encode_ordinary(text), repr(text)


@pytest.mark.slow
def test_gpt4_matches_tiktoken_on_many_glued_tokens(gpt4, tiktoken_built):
    for text in _cl100k_texts(50_000, seed=8):
        assert gpt4.encode_ordinary(text) == tiktoken_built.encode_ordinary(text), repr(text)


@pytest.mark.slow
def test_gpt4_matches_tiktoken_on_every_bmp_character(gpt4, tiktoken_built):
    """Every character of the Basic Multilingual Plane (and every 16th beyond it) between
    letters, digits, spaces and apostrophes: the split pattern's classes (\\p{L}, \\p{N}, \\s) must
    agree between the ``regex`` module and tiktoken's Rust regex engine."""
    points = [p for p in range(0x10000) if not 0xD800 <= p <= 0xDFFF] + list(range(0x10000, 0x110000, 16))
    for k in range(0, len(points), 2048):
        text = "\n".join(f"a{c}b 1{c}2 {c}{c} {c}x '{c} x{c}" for c in map(chr, points[k:k + 2048]))
        assert gpt4.encode_ordinary(text) == tiktoken_built.encode_ordinary(text), hex(points[k])


SPECIAL_TEXT = "Hi<|endoftext|>there <|fim_prefix|>x<|fim_suffix|><|endoftext|>\n<|endofprompt|>"


@pytest.mark.parametrize("allowed,text", [
    ("all", SPECIAL_TEXT),
    (set(GPT4_SPECIAL_TOKENS), SPECIAL_TEXT),
    ({"<|endoftext|>"}, "Hi<|endoftext|>there<|endoftext|> end"),
    ({"<|endoftext|>"}, "<|endoftext|><|endoftext|>"),
    ({"<|endofprompt|>"}, "  <|endofprompt|>  \n"),  # whitespace split around the token
], ids=["all", "set", "one", "only_specials", "whitespace"])
def test_gpt4_special_tokens_allowed(gpt4, tiktoken_cached, allowed, text):
    expected = tiktoken_cached.encode(text, allowed_special=allowed)
    assert gpt4.encode(text, allowed_special=allowed) == expected
    assert set(expected) & set(GPT4_SPECIAL_TOKENS.values())
    assert gpt4.decode(expected) == text


def test_gpt4_special_tokens_disallowed_raise_like_tiktoken(gpt4, tiktoken_cached):
    for text in ["<|endoftext|>", "a <|fim_middle|> b"]:
        with pytest.raises(ValueError):
            tiktoken_cached.encode(text)
        with pytest.raises(ValueError, match="allowed_special"):
            gpt4.encode(text)
    # allowing one token does not allow the others
    with pytest.raises(ValueError, match="<\\|fim_prefix\\|>"):
        gpt4.encode(SPECIAL_TEXT, allowed_special={"<|endoftext|>"})
    # disallowed_special=() encodes them as ordinary text, as tiktoken does
    for allowed in [set(), {"<|endoftext|>"}]:
        assert (gpt4.encode(SPECIAL_TEXT, allowed_special=allowed, disallowed_special=())
                == tiktoken_cached.encode(SPECIAL_TEXT, allowed_special=allowed,
                                          disallowed_special=()))


def test_gpt4_to_tiktoken_is_cl100k(gpt4, tiktoken_built):
    enc = gpt4.to_tiktoken()
    assert enc.name == "cl100k_base" and enc.n_vocab == tiktoken_built.n_vocab
    text = "".join(TEXTS.values())
    assert enc.encode(text, allowed_special="all") == tiktoken_built.encode(text, allowed_special="all")


def test_gpt4_cannot_be_trained(gpt4):
    with pytest.raises(NotImplementedError, match="RegexTokenizer"):
        gpt4.train("some text", 300)


# --------------------------------------------------------------------------------------------
# Every implementation: decode(encode(s)) == s, invalid UTF-8 becomes U+FFFD
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_roundtrip(any_tokenizer, text):
    ids = any_tokenizer.encode(text, disallowed_special=())
    assert all(isinstance(i, int) for i in ids)
    assert any_tokenizer.decode(ids) == text


def test_roundtrip_random_strings(any_tokenizer):
    for text in random_texts(100, seed=3):
        assert any_tokenizer.decode(any_tokenizer.encode(text)) == text, repr(text)


def test_roundtrip_with_special_tokens(trained, gpt4):
    text = "a<|endoftext|>b <|user|> c"
    tok = trained["regex"]
    ids = tok.encode(text, allowed_special="all")
    assert SPECIALS["<|endoftext|>"] in ids and SPECIALS["<|user|>"] in ids
    assert tok.decode(ids) == text


def test_decode_invalid_utf8_gives_replacement_character(any_tokenizer):
    b = any_tokenizer.byte_to_id
    euro = [b[x] for x in "€".encode()]  # e2 82 ac
    assert any_tokenizer.decode(euro[:2]) == "\ufffd"  # cut in the middle of a character
    assert any_tokenizer.decode([b[0x80]]) == "\ufffd"  # a lone continuation byte
    assert any_tokenizer.decode([b[0xFF], b[ord("a")]]) == "\ufffda"  # never valid in UTF-8
    assert any_tokenizer.decode(euro[1:] + euro) == "\ufffd\ufffd€"
    ids = any_tokenizer.encode("日本")
    assert "\ufffd" not in any_tokenizer.decode(ids)
    raw = any_tokenizer.decode_bytes(ids)
    assert raw == "日本".encode()


def test_decode_rejects_unknown_ids(any_tokenizer):
    with pytest.raises(ValueError, match="not a token id"):
        any_tokenizer.decode([10**7])
    with pytest.raises(ValueError, match="not a token id"):
        any_tokenizer.decode(iter([1, "x"]))


# --------------------------------------------------------------------------------------------
# Training: the fast trainer learns exactly the plain trainer's merges
# --------------------------------------------------------------------------------------------

TRAIN_CASES = {
    "aaaaaa": ("aaaaaa", 259),
    "odd_runs": ("aaa aaaaa aaaaaaa a aa", 262),
    "ties": ("ab cd ef gh ab cd ef gh", 262),
    "overlap": ("aaabdaaabac", 259),
    "abab": ("abababab babababa", 262),
    "emoji": ("🙂🙂🙂🙂 🙂🙂 👍🏽👍🏽", 270),
    "cjk": ("日本語のテキスト日本語日本", 270),
    "mixed": (TEXTS["hello"] + TEXTS["code"] + TEXTS["contractions"], 330),
}


@pytest.mark.parametrize("cls", [BasicTokenizer, RegexTokenizer])
@pytest.mark.parametrize("text,vocab_size", TRAIN_CASES.values(), ids=TRAIN_CASES.keys())
def test_fast_and_plain_training_learn_the_same_merges(cls, text, vocab_size):
    fast, plain = cls(), cls()
    outcomes = []
    for tok, algorithm in [(fast, "fast"), (plain, "plain")]:
        try:
            tok.train(text, vocab_size, algorithm=algorithm)
            outcomes.append(list(tok.merges.items()))
        except ValueError as e:  # ran out of pairs: both must say so after the same merges
            outcomes.append(str(e))
    assert outcomes[0] == outcomes[1]


def test_fast_and_plain_on_random_texts():
    rng = random.Random(4)
    alphabets = ["ab", "aab ", "abc  ", "a", "日本語", "🙂👍🏽 ok", "the cat sat. "]
    splitter = RegexTokenizer()
    for _ in range(150):
        text = "".join(rng.choice(rng.choice(alphabets)) for _ in range(rng.randrange(2, 200)))
        chunks = [text] if rng.random() < 0.5 else splitter._chunks(text)
        vocab_size = 256 + rng.randrange(1, 40)
        results = []
        for train in (train_fast, train_plain):
            try:
                results.append(list(train(chunks, vocab_size).items()))
            except ValueError as e:
                results.append(str(e))
        assert results[0] == results[1], (text, vocab_size)


def test_fast_and_plain_on_sample_text():
    chunks = RegexTokenizer()._chunks(load_sample_text(20_000))
    assert train_fast(chunks, 300) == train_plain(chunks, 300)
    assert list(train_fast(chunks, 300).items()) == list(train_plain(chunks, 300).items())


@pytest.mark.slow
def test_fast_and_plain_on_larger_text():
    text = load_sample_text(60_000)
    for chunks in (RegexTokenizer()._chunks(text), [text[:10_000]]):
        assert list(train_fast(chunks, 340).items()) == list(train_plain(chunks, 340).items())


def test_training_gives_vocab_size_tokens():
    tok = RegexTokenizer()
    tok.train(TRAIN_TEXT, 300)
    assert tok.n_vocab == 300 and len(tok.merges) == 44
    assert sorted(tok.merges.values()) == list(range(256, 300))
    tok.train(TRAIN_TEXT, 256)  # no merges: a byte-level tokenizer
    assert tok.merges == {} and tok.encode("hi") == [104, 105]


def test_training_runs_out_of_pairs():
    with pytest.raises(ValueError, match="vocab_size <= 258"):
        BasicTokenizer().train("abc", 300)


def test_training_keeps_registered_special_tokens():
    tok = RegexTokenizer()
    tok.register_special_tokens({"<|endoftext|>": 5000})
    tok.train(TRAIN_TEXT, 300)
    assert tok.encode("<|endoftext|>", allowed_special="all") == [5000]
    with pytest.raises(ValueError, match="vocab_size <= 5000"):
        tok.train(TRAIN_TEXT, 5001)


def test_merges_compress_the_text(trained):
    text = load_sample_text(5_000)
    for tok in trained.values():
        assert len(tok.encode(text)) < 0.7 * len(text.encode())


# --------------------------------------------------------------------------------------------
# Export to tiktoken: the same ids, at tiktoken's speed
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["basic", "regex"])
def test_to_tiktoken_gives_the_same_ids(trained, kind):
    tok = trained[kind]
    enc = tok.to_tiktoken("course_test")
    assert isinstance(enc, tiktoken.Encoding) and enc.name == "course_test"
    assert enc.n_vocab == max(tok.vocab) + 1
    for text in list(TEXTS.values()) + random_texts(150, seed=5) + [load_sample_text(5000)]:
        assert enc.encode(text, disallowed_special=()) == tok.encode(text, disallowed_special=())
        assert enc.decode(tok.encode(text, disallowed_special=())) == text


def test_to_tiktoken_with_special_tokens(trained):
    tok = trained["regex"]
    enc = tok.to_tiktoken()
    text = "x<|endoftext|>y <|user|>\n<|user|>z"
    for allowed in ["all", {"<|user|>"}]:
        kwargs = dict(allowed_special=allowed, disallowed_special=())
        assert enc.encode(text, **kwargs) == tok.encode(text, **kwargs)
    assert enc.encode(text, allowed_special="all").count(SPECIALS["<|user|>"]) == 2
    with pytest.raises(ValueError):
        enc.encode(text)
    with pytest.raises(ValueError):
        tok.encode(text)


def test_to_tiktoken_on_tokenizers_trained_on_random_texts():
    rng = random.Random(6)
    for _ in range(40):
        alphabet = rng.choice(["ab ", "aab ba", "xyz xy", "日本語 ", "🙂👍🏽 ok", "abcd\n"])
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(50, 400)))
        tok = rng.choice([BasicTokenizer, RegexTokenizer])()
        try:
            tok.train(text, 256 + rng.randrange(1, 50))
        except ValueError:
            continue
        enc = tok.to_tiktoken()
        for _ in range(10):
            s = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 100)))
            assert enc.encode_ordinary(s) == tok.encode_ordinary(s), (text, s)


def test_to_tiktoken_refuses_two_tokens_with_the_same_bytes():
    tok = RegexTokenizer()
    tok.merges = {(97, 98): 256, (256, 99): 257, (98, 99): 258, (97, 258): 259}  # abc twice
    tok.vocab = tok._build_vocab()
    with pytest.raises(ValueError, match="tokens 257 and 259 have the same bytes"):
        tok.to_tiktoken()


# --------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["basic", "regex", pytest.param("gpt4", marks=pytest.mark.slow)])
def test_save_load_roundtrip(trained, gpt4, tmp_path, kind):
    tok = gpt4 if kind == "gpt4" else trained[kind]
    model = tok.save(tmp_path / "tok")
    assert model == tmp_path / "tok.model" and (tmp_path / "tok.vocab").exists()
    loaded = Tokenizer.load(model)
    assert type(loaded) is type(tok)
    assert loaded.merges == tok.merges and list(loaded.merges) == list(tok.merges)
    assert loaded.special_tokens == tok.special_tokens and loaded.pattern == tok.pattern
    text = TEXTS["hello"] + TEXTS["code"] + "<|endoftext|>"
    assert loaded.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    assert type(tok).load(model).vocab == tok.vocab


def _saved(tmp_path, trained):
    return trained["regex"].save(tmp_path / "tok")


CORRUPTIONS = {
    "empty": lambda lines: [],
    "wrong_version": lambda lines: ["minbpe v1"] + lines[1:],
    "unknown_class": lambda lines: lines[:1] + ["SentencePiece"] + lines[2:],
    "bad_pattern_base64": lambda lines: lines[:2] + ["%%%"] + lines[3:],
    "short_byte_table": lambda lines: lines[:3] + ["1 2 3"] + lines[4:],
    "truncated": lambda lines: lines[:-5],
    "merge_not_numbers": lambda lines: lines[:-3] + ["a b c"] + lines[-2:],
    "merge_undefined_id": lambda lines: lines[:-2] + ["99999 1 5000"] + lines[-1:],
    "merge_count_wrong": lambda lines: lines[:-1] + ["end 3"],
    "special_id_clash": lambda lines: lines[:5] + ["PHx1c2VyfD4= 300"] + lines[6:],
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_load_corrupt_file_says_which_file_and_how_to_fix(trained, tmp_path, corrupt):
    model = _saved(tmp_path, trained)
    model.write_text("\n".join(corrupt(model.read_text().splitlines())) + "\n")
    with pytest.raises(ValueError) as info:
        Tokenizer.load(model)
    assert str(model) in str(info.value) and "tokenizer.save(prefix)" in str(info.value)


def test_load_binary_garbage(tmp_path):
    model = tmp_path / "junk.model"
    model.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(ValueError, match="junk.model.*tokenizer.save"):
        Tokenizer.load(model)


def test_load_wrong_path(tmp_path):
    with pytest.raises(ValueError, match=r"\.model"):
        Tokenizer.load(tmp_path / "tok")
    with pytest.raises(FileNotFoundError, match="save"):
        Tokenizer.load(tmp_path / "missing.model")


# --------------------------------------------------------------------------------------------
# Bad input: errors that name the argument and the fix
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [BasicTokenizer, RegexTokenizer])
def test_train_rejects_bad_arguments(cls):
    with pytest.raises(ValueError, match="vocab_size must be at least 256"):
        cls().train("hello", 255)
    for bad in [300.0, "300", True, None]:
        with pytest.raises(TypeError, match="vocab_size must be an int"):
            cls().train("hello", bad)
    for bad in [b"hello", ["hello"], None, 3]:
        with pytest.raises(TypeError, match="text must be a str"):
            cls().train(bad, 300)
    with pytest.raises(ValueError, match="algorithm must be 'fast' or 'plain'"):
        cls().train("hello", 257, algorithm="quick")


def test_encode_rejects_non_str(any_tokenizer):
    for bad in [b"hello", None, 42, ["a"]]:
        with pytest.raises(TypeError, match="text must be a str"):
            any_tokenizer.encode(bad)
        with pytest.raises(TypeError, match="text must be a str"):
            any_tokenizer.encode_ordinary(bad)


def test_encode_rejects_unknown_special_tokens(gpt4, trained):
    with pytest.raises(ValueError, match="allowed_special names unknown special token.*<\\|nope\\|>"):
        gpt4.encode("hi", allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="register_special_tokens"):
        trained["basic"].encode("hi", allowed_special={"<|endoftext|>"})
    with pytest.raises(TypeError, match=r"allowed_special=\{'<\|endoftext\|>'\}"):
        gpt4.encode("hi", allowed_special="<|endoftext|>")
    with pytest.raises(TypeError, match="allowed_special must be 'all' or a set"):
        gpt4.encode("hi", allowed_special=5)


def test_register_special_tokens_rejects_used_ids():
    tok = RegexTokenizer()
    tok.train(TRAIN_TEXT, 300)
    with pytest.raises(ValueError, match="already an ordinary token; use an id >= 300"):
        tok.register_special_tokens({"<|a|>": 299})
    with pytest.raises(ValueError, match="already an ordinary token"):
        tok.register_special_tokens({"<|a|>": 65})
    tok.register_special_tokens({"<|a|>": 300})
    with pytest.raises(ValueError, match="already the special token '<\\|a\\|>'"):
        tok.register_special_tokens({"<|b|>": 300})
    with pytest.raises(ValueError, match="must be an int >= 0"):
        tok.register_special_tokens({"<|b|>": -1})
    with pytest.raises(ValueError, match="non-empty str"):
        tok.register_special_tokens({"": 400})
    with pytest.raises(TypeError, match="dict"):
        tok.register_special_tokens(["<|b|>"])
    with pytest.raises(ValueError, match="same id"):
        tok.register_special_tokens({"<|b|>": 400, "<|c|>": 400})
    assert tok.special_tokens == {"<|a|>": 300}


def test_regex_tokenizer_rejects_bad_patterns():
    with pytest.raises(ValueError, match="pattern is not a valid regular expression"):
        RegexTokenizer("(unclosed")
    with pytest.raises(TypeError, match="pattern must be"):
        RegexTokenizer(None)


# --------------------------------------------------------------------------------------------
# Looking at tokens, the sample text
# --------------------------------------------------------------------------------------------


def test_render_token():
    assert tk.render_token(b"hello world") == "hello world"
    assert tk.render_token(b"\n\t") == "\\u000a\\u0009"
    assert tk.render_token("€".encode()[:2]) == "\ufffd"


def test_tokens_html(gpt4, tiktoken_built, trained):
    html = tk.tokens_html(gpt4, "Hello <world>\n<|endoftext|>")
    assert "&lt;" in html and "<world>" not in html and 'title="id 100257"' in html and "tokens" in html
    assert tk.tokens_html(tiktoken_built, "Hello world") == tk.tokens_html(gpt4, "Hello world")
    assert "tokens" in tk.tokens_html(trained["basic"], "strawberry")


def test_load_sample_text():
    text = load_sample_text()
    assert len(text.encode()) > 900_000 and load_sample_text(100) == text[:100]


# --------------------------------------------------------------------------------------------
# Speed (generous bounds: the machine is shared; bench/bench_tokenizer.py measures properly)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_fast_trainer_speed():
    """In the spirit of CS336's BPE speed test (133 KB at vocab 500 in under 1.5 s)."""
    import time

    text = load_sample_text(133_000)
    tok = RegexTokenizer()
    start = time.perf_counter()
    tok.train(text, 500)
    assert time.perf_counter() - start < 3.0
