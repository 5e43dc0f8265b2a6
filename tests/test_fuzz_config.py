"""Fuzzing the run config (Hypothesis): override tokens, override mappings, YAML recipes, mutated real recipes.

Every case must end in a clean, valid :class:`RunConfig` or the project's own :class:`InputError`; another
exception (a crash) or a case running past ``CASE_SECONDS`` (a hang, e.g. an exponential YAML alias expansion
in an error message) fails the test. Clean results must also survive ``to_dict`` -> ``from_dict`` and
``save_yaml`` -> ``load_yaml`` unchanged. About 3,400 cases in all.
"""

from __future__ import annotations

import random
from typing import Callable

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from litezoo import config as C
from litezoo.errors import InputError
from _fuzz import Outcomes, fuzz_settings, time_limit

CASE_SECONDS = 10.0  # generous: CI machines are shared; a real hang (exponential work) is far slower
OUTCOMES = Outcomes()  # (test, clean | input error), checked by the last test
FUZZ = fuzz_settings(max_examples=1000)


def outcome(test: str, fn: Callable[[], C.RunConfig]) -> C.RunConfig | None:
    """Run one case: a valid config or an InputError with a one-line message; anything else propagates."""
    with time_limit(CASE_SECONDS, "a config case"):
        try:
            cfg = fn()
        except InputError as exc:
            message = str(exc)
            assert message and "\n" not in message, f"InputError message not one line: {message!r}"
            assert len(message) < 20_000, "an error message that large is a repr gone wrong"
            OUTCOMES[test, "input error"] += 1
            return None
    assert isinstance(cfg, C.RunConfig)
    OUTCOMES[test, "clean"] += 1
    with time_limit(CASE_SECONDS, "a config case"):
        assert C.from_dict(C.to_dict(cfg)) == cfg  # a clean result is a complete, self-consistent config
    return cfg


# --- the pieces people type ---------------------------------------------------------------------------------

LEAVES = sorted({k.split(".", 1)[1] for k in C.FIELDS})
KEYS = sorted(C.FIELDS) + LEAVES + sorted(C.ALIASES) + list(C.SECTIONS)
key_text = st.one_of(
    st.sampled_from(KEYS),
    st.sampled_from(KEYS).map(lambda k: k.replace("_", "-")),
    st.sampled_from(KEYS).map(lambda k: k.upper()),
    st.sampled_from(KEYS).flatmap(lambda k: st.integers(0, max(len(k) - 1, 0)).map(lambda i: k[:i] + k[i + 1 :])),
    st.text(max_size=20),
)
number_text = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e4", "4e-5", "0x10", "1_000", "-0", "+3", ".5", "5.", "1e999", "9" * 5000, "nan", "inf"]),
)
word_text = st.sampled_from([
    "true", "false", "yes", "no", "on", "off", "none", "null", "~", "", " ", "auto", "cpu", "cuda", "cuda:1",
    "mps", "bf16", "fp16", "sgd", "adamw", "cosine", "onecycle", "steps", "0.3,0.6,0.8", "[0.1, 0.2]", "(1,2)",
    "0.9,0.999", "1,2,3", ",", "skip", "stop", "backbone", "until:features", "vgg_fast_cifar", "cifar10",
])  # fmt: skip
value_text = st.one_of(number_text, word_text, st.text(max_size=30))
scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), value_text
)
structure = st.recursive(
    scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(key_text, inner, max_size=3), max_leaves=6
)
# Mostly well-formed overrides (a known key, a plausible value) so that many cases get past parsing into
# validation and the round trips; the rest is noise.
field_override = st.tuples(st.sampled_from(KEYS), st.one_of(value_text, scalar))


def flag(key: str) -> str:
    return "--" + key


override_tokens = st.lists(
    st.one_of(
        st.tuples(key_text.map(flag), value_text).map(list),
        st.tuples(key_text, value_text).map(lambda kv: [f"--{kv[0]}={kv[1]}"]),
        st.text(max_size=12).map(lambda t: [t]),
        st.just(["--"]),
        key_text.map(lambda k: [flag(k)]),  # a flag without its value
    ),
    max_size=6,
).map(lambda groups: [token for group in groups for token in group])


@FUZZ
@given(tokens=override_tokens)
def test_fuzz_command_line_overrides(tokens):
    def case():
        return C.resolve(overrides=C.parse_cli_overrides(tokens))

    outcome("tokens", case)


@FUZZ
@given(overrides=st.one_of(st.dictionaries(key_text, structure, max_size=4),
                           st.lists(field_override, max_size=6).map(dict)))  # fmt: skip
def test_fuzz_override_mappings(overrides):
    outcome("mappings", lambda: C.resolve(overrides=overrides))


def _sections(overrides: dict[str, object]) -> dict[str, dict[str, object]]:
    """``{"optim.lr": v, "epochs": w}`` as recipe sections (leaf names go to a random-ish section)."""
    doc: dict[str, dict[str, object]] = {}
    for key, value in overrides.items():
        section, _, name = key.rpartition(".")
        doc.setdefault(section or C.SECTIONS[len(key) % len(C.SECTIONS)], {})[name] = value
    return doc


@settings(FUZZ, max_examples=800)
@given(doc=st.one_of(structure, st.lists(field_override, max_size=6).map(dict).map(_sections)))
def test_fuzz_yaml_recipes(doc, tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "fuzz_recipe.yaml"
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when present: the writer is not under test
    text = yaml.dump(doc, Dumper=dumper, allow_unicode=True)
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    cfg = outcome("yaml", lambda: C.resolve(path))
    if cfg is not None:
        saved = C.save_yaml(cfg, tmp_path_factory.getbasetemp() / "fuzz_saved.yaml")
        assert C.load_yaml(saved) == cfg


# YAML that PyYAML itself turns into Python errors other than YAMLError, and documents that are cheap to
# write but expensive to print (shared aliases: the "billion laughs" shape).
NASTY_YAML = [
    "train:\n  seed: 2001-13-01\n",  # a timestamp with month 13: ValueError inside PyYAML's constructor
    "train:\n  epochs: " + "[" * 1200 + "\n",  # nesting deep enough for a RecursionError
    "model:\n  name: &a [*a]\n",  # a list that contains itself
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\ntrain:\n  epochs: *g\n",  # 9^7 = 4.8M leaves if printed in full
    "train: !!python/object/apply:os.system ['true']\n",  # never run code: safe_load refuses the tag
    "train:\n  seed: !!binary aGVsbG8=\n",
    "\ufeffoptim:\n  lr: 0.05\n",  # a byte-order mark
    "optim:\n  lr: 0.05\noptim:\n  lr: 0.1\n",  # a repeated section
    "? [optim]\n: {lr: 1}\n",  # an unhashable key
    "train: {epochs: 3, epochs: 4}\n",
]


@pytest.mark.parametrize("text", NASTY_YAML, ids=range(len(NASTY_YAML)))
def test_nasty_yaml_ends_in_a_config_or_an_input_error(text, tmp_path):
    path = tmp_path / "nasty.yaml"
    path.write_text(text, encoding="utf-8")
    outcome("nasty", lambda: C.resolve(path))


def test_a_file_that_is_not_utf8_text_is_an_input_error(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"train:\n  epochs: \xff\xfe\x00\n")
    with pytest.raises(InputError, match="not UTF-8"):
        C.resolve(path)


@settings(FUZZ, max_examples=600)
@given(recipe=st.sampled_from(C.list_recipes()), seed=st.integers(0, 2**32 - 1), edits=st.integers(1, 8))
def test_fuzz_mutated_real_recipes(recipe, seed, edits, tmp_path_factory):
    """Byte-level edits of the shipped recipes: the typos, truncations and stray characters of hand editing."""
    data = bytearray(C.recipe_path(recipe).read_bytes())
    rng = random.Random(seed)
    for _ in range(edits):
        i = rng.randrange(len(data) + 1)
        kind = rng.choice(("flip", "insert", "delete", "truncate", "duplicate"))
        if kind == "flip" and i < len(data):
            data[i] = rng.choice(b":- \n\t#[]{}&*!|>'\"%@`0123456789.exyz\xff")
        elif kind == "insert":
            data[i:i] = bytes([rng.randrange(256)])
        elif kind == "delete" and i < len(data):
            del data[i]
        elif kind == "truncate":
            del data[i:]
        elif kind == "duplicate":
            data[i:i] = data[max(0, i - 40) : i]
    path = tmp_path_factory.getbasetemp() / "mutated.yaml"
    path.write_bytes(bytes(data))
    needed = {"model.init_from": "w.safetensors"} if b"init_from" in C.recipe_path(recipe).read_bytes() else None
    outcome("mutated", lambda: C.resolve(path, needed))


def test_zz_report_outcomes():
    """Both outcomes occurred in every fuzzed family (the generators reach valid configs as well as errors)."""
    both = ("clean", "input error")
    total = OUTCOMES.require({family: both for family in ("tokens", "mappings", "yaml", "mutated")}, min_total=3000)
    print(f"\nconfig fuzz cases: {total} ({dict(sorted(OUTCOMES.items()))})")
