"""The rule audit: every rule a task's text states, the hand-written case that exercises it, and
the wrong answer that breaks just that rule (tests/test_rule_audit.py checks every row).

A row is ``Rule(assignment, task, rule, covered_by, wrong, quoted)``:

- ``rule``: the rule, quoted from the solutions notebook (the task's text or its docstring) when
  ``quoted`` is True (the test checks the quote is still there, whitespace aside), else a close
  paraphrase;
- ``covered_by``: where the case lives: ``fixed`` cases of the grading module's generator
  (``course_lib/grading/<assignment>.py``, visible and hidden calls both use them), a hidden
  call's literal ``cases=[...]``, or a comparator that judges the property on every case;
- ``wrong``: the wrong answer in ``tests/submissions/<assignment>_answers.py`` that breaks only
  this rule: a key of ``RULE_WRONG`` or ``WRONG``, or ``task[k]`` for ``MORE_WRONG``.

``NOT_CHECKED`` lists the stated rules no value-based check can see (mutating an argument,
``torch.no_grad()``), with the reason; the grading core would have to report more than the
returned value for them.

A mistake costs the marks of its own task only: where a task calls another task's function
(tokenization's train_bpe/encode -> get_stats/merge, pretraining_data's near_duplicate_pairs ->
minhash_signature/estimated_jaccard, transformer's block_forward -> attention, inference's
sample -> the filters), the grader substitutes the course's function while checking the caller
(``Task.substitute``), and each notebook's introduction says so.
"""

from __future__ import annotations

from typing import NamedTuple

ASSIGNMENTS = ("pretraining_data", "tokenization", "transformer", "pretraining", "inference",
               "finetuning", "tools", "rl", "rlhf")


class Rule(NamedTuple):
    assignment: str
    task: str
    rule: str
    covered_by: str
    wrong: str
    quoted: bool = True


def _rows(assignment, rows):
    return [Rule(assignment, *r) for r in rows]


PD, TOK, TR, PT, INF, FT, TL, RL, RLHF = ASSIGNMENTS

# said in the introduction of every notebook in which a task calls another task's function
POLICY = "**A mistake costs the marks of its own task only.**"

RULES = [
    # -- pretraining_data ---------------------------------------------------------------------
    *_rows(PD, [
        ("extract_text", "ignore everything inside `<script>`, `<style>`",
         "fixed: _HAND_PAGES[0] (script, style in head)", "extract_text"),
        ("extract_text", "`<nav>`, `<header>`, `<footer>`, `<aside>`",
         "fixed: _HAND_PAGES[0], [1] (nav, header, footer, aside)", "extract_text[0]"),
        ("extract_text", "(including elements nested in them)",
         "fixed: _HAND_PAGES[0] (<a> inside <nav>), [1] (<h2> inside <header>)",
         "extract_skip_not_nested"),
        ("extract_text", "start a new line at each block element",
         "fixed: _HAND_PAGES[1], [3] (several block elements); comparator line count",
         "extract_one_line"),
        ("extract_text", "collapse runs of whitespace inside a line to one space, drop empty lines",
         "fixed: _HAND_PAGES[6] (spaced text, empty divs); comparator _compare_extract checks "
         "every line", "extract_whitespace_kept"),
        ("extract_text", "decode entities", "fixed: _HAND_PAGES[6] (many entities)",
         "extract_entities_lost"),
        ("extract_text", "Pages may be broken (unclosed tags, stray end tags) or empty: return "
         "what text there is (or `\"\"`), never raise", "fixed: _HAND_PAGES[2], [5] ('')",
         "extract_empty_none"),
        ("language_score", "Your score must be at least 0.65 when the text is in `lang` and below "
         "0.65 when it is not", "fixed: _language_cases (German and French asked as 'en')",
         "language_score"),
        ("language_score", "for a `lang` your model does not know, return 0.0",
         "fixed: _language_cases (lang 'tlh')", "language_unknown_raises"),
        ("language_score", "returning the probability (a float from 0 to 1)",
         "comparator _compare_language (0..1), every case", "language_log_score"),
        ("minhash_signature", "The hash functions must be chosen by `seed` (another seed gives "
         "other hash functions)", "fixed: _minhash_cases (seed + 1); compare_all",
         "minhash_signature"),
        ("minhash_signature", "returning a list of `num_perm` ints",
         "fixed: _minhash_cases (num_perm 96, 16); comparator", "minhash_signature[1]"),
        ("minhash_signature", "the set of `ngram` consecutive words",
         "fixed: _minhash_cases (ngram 3 vs 5); compare_all", "minhash_signature[0]"),
        ("minhash_signature", "lowercase the text", "fixed: _minhash_cases (base.upper())",
         "minhash_no_lowercase"),
        ("minhash_signature", "a text with fewer than `ngram` words has one shingle, all its words",
         "fixed: _minhash_cases ('too short', 16, 5)", "minhash_short_text_raises"),
        ("estimated_jaccard", "the share of positions at which two signatures of the same length "
         "hold the same value", "fixed: _jaccard_cases ([7, 7, 7], [7, 8, 7])",
         "estimated_jaccard"),
        ("estimated_jaccard", "(a float from 0 to 1)", "fixed: _jaccard_cases ([1,2,3,4] twice)",
         "jaccard_count_not_share"),
        ("near_duplicate_pairs", "whose estimated Jaccard similarity",
         "fixed: _near_dup_cases (the edited copy, doc 3)", "near_duplicate_pairs"),
        ("near_duplicate_pairs", "return the set of pairs `(i, j)` with `i < j`",
         "comparator _compare_pairs (i < j), fixed docs", "near_pairs_reversed"),
        ("near_duplicate_pairs", "Exact copies are near duplicates too",
         "fixed: _near_dup_cases (docs 0 and 1 equal)", "near_skips_exact_copies"),
        ("near_duplicate_pairs", "all pairs, any i < j (not only neighbours)",
         "random: _near_dup_cases shuffled corpora (visible and hidden)",
         "near_duplicate_pairs[0]", False),
        ("redact_pii", "`(555) 123-4567`", "fixed: _pii_cases[1]", "redact_pii"),
        ("redact_pii", "e-mail addresses (`name@host.tld`; the name may hold letters, digits "
         "and `._%+-`) with `<EMAIL>`", "fixed: _pii_cases[3] (x_y+z@uni.edu)",
         "pii_email_no_plus"),
        ("redact_pii", "IPv4 addresses (four numbers from 0 to 255",
         "fixed: _pii_cases[4] (256.1.1.1)", "pii_ip_any_octet"),
        ("redact_pii", "not part of a longer run of digits and dots such as `1.2.3.4.5`",
         "fixed: _pii_cases[5] (1.2.3.4.5)", "pii_ip_in_longer_run"),
        ("redact_pii", "each optionally preceded by `+1 ` or `+1-` (the prefix is part of the "
         "number)", "fixed: _pii_cases[1], [3]", "pii_phone_no_prefix"),
        ("redact_pii", "`555.123.4567`", "fixed: _pii_cases[3]", "pii_phone_no_dots"),
        ("redact_pii", "A full stop after an address ends the sentence, not the address.",
         "fixed: _pii_cases[3] (uni.edu.), [5] (10.0.0.1.)", "pii_email_eats_full_stop"),
        ("redact_pii", "A full stop after an IP address ends the sentence", "fixed: _pii_cases[5]",
         "pii_ip_before_full_stop", False),
        ("redact_pii", "Everything else stays as it is.", "fixed: _pii_cases[5] (5551234567)",
         "pii_phone_bare_digits"),
        ("redact_pii", "IPs replaced with `<IP>`", "fixed: _pii_cases[1]", "redact_pii[0]", False),
        ("redact_pii", "the placeholder is exactly `<EMAIL>`", "fixed: _pii_cases[0]",
         "redact_pii[1]", False),
    ]),
    # -- tokenization ---------------------------------------------------------------------------
    *_rows(TOK, [
        ("get_stats", "maps each pair of adjacent ids `(ids[i], ids[i+1])` (a tuple)",
         "fixed: _get_stats_cases [1, 2, 3, 1, 2]", "stats_string_keys"),
        ("get_stats", "every adjacent pair, the last one too", "fixed: _get_stats_cases [7]... "
         "[1, 2, 3, 1, 2]", "get_stats", False),
        ("get_stats", "to how many times it occurs (overlapping pairs each count)",
         "fixed: _get_stats_cases [5, 5, 5, 5]; hidden cases=[[9, 9, 9, 9, 9]]",
         "stats_non_overlapping", False),
        ("get_stats", "an empty list (or one id) has no pairs: {}", "fixed: _get_stats_cases [], [7]",
         "stats_empty_raises", False),
        ("merge", "Overlapping occurrences are taken from the left: `merge([5, 5, 5], (5, 5), 6) "
         "== [6, 5]`", "fixed: _merge_cases ([5, 5, 5], (5, 5), 6)", "merge_from_right"),
        ("merge", "after replacing a pair, its second id is skipped",
         "fixed: _merge_cases ([1, 2, 3, 1, 2], (1, 2), 4)", "merge", False),
        ("merge", "every occurrence of `pair` in `ids`", "fixed: _merge_cases [1, 2, 3, 1, 2]",
         "merge_first_only"),
        ("merge", "the pair is ordered: (4, 3) does not match 3, 4",
         "fixed: _merge_cases ([3, 4, 5], (4, 3), 9)", "merge_either_order", False),
        ("train_bpe", "Start from the UTF-8 bytes of `text`",
         "fixed: _train_cases ('héllo wörld 👋👋', 270)", "train_code_points"),
        ("train_bpe", "for each new id `256, 257, ..., vocab_size - 1`",
         "fixed: _train_cases ('aaabdaaabac', 259)", "train_one_merge_too_many"),
        ("train_bpe", "pick the **most frequent** pair", "fixed: _train_cases ('aaabdaaabac', 259)",
         "train_least_frequent"),
        ("train_bpe", "pick the **smallest** pair in Python's tuple order",
         "random _train_cases; hidden cases=[['ba ab ba ab', 262]]", "train_bpe"),
        ("train_bpe", "ties go to the smallest pair, not the largest",
         "fixed: _train_cases ('abcd', 258)", "train_ties_to_largest", False),
        ("train_bpe", "Stop early, returning what you have, when no pairs are left.",
         "fixed: _train_cases ('', 260), ('ab', 300)", "train_no_early_stop"),
        ("train_bpe", "Return the dict of merges in the order they were learned",
         "comparator _compare_merges (order of the dict), every case", "train_sorted_merges"),
        ("train_bpe", "a dict {(a, b): new_id}", "fixed: _train_cases, every case",
         "train_merges_as_list", False),
        ("encode", "the UTF-8 bytes of `text`", "fixed: _encode_cases ('🙂🙂🙂', ...)",
         "encode_code_points"),
        ("encode", "always apply the one that was learned **earliest** (the smallest new id)",
         "fixed: _encode_cases ('abcbc', ...)", "encode"),
        ("encode", "the smallest new id, whatever the dict's order",
         "fixed: _encode_cases ('abab', {(97, 98): 257, (98, 97): 256})", "encode_dict_order",
         False),
        ("encode", "stop when no pair present is in `merges`",
         "hidden cases=[['aaaa', {(97, 97): 256, (256, 256): 257}]]", "encode_single_sweep"),
        ("encode", "the empty text (and one byte) encodes without error",
         "fixed: _encode_cases ('', m)", "encode_empty_raises", False),
        ("encode", "Characters never seen in training simply stay as bytes.",
         "fixed: _encode_cases ('xyz aaab', m), ('hello', {})", "encode_drops_unseen"),
        ("decode", "decode with `errors=\"replace\"`", "fixed: _decode_cases ([0xE2, 0x82], {})",
         "decode"),
        ("decode", "the bytes of every id joined, as text",
         "random _decode_cases (characters split across tokens)", "decode_per_token"),
        ("decode", "a merged id's bytes are its two parts' bytes joined",
         "fixed: _decode_cases ([258, 100, 258, 97, 99], m)", "decode_one_level"),
    ]),
    # -- transformer ----------------------------------------------------------------------------
    *_rows(TR, [
        ("attention", "divided by `sqrt(D)`", "fixed: _attention_cases (every case)", "no_scaling"),
        ("attention", "divide by the head size D, not T", "fixed: _attention_cases (T != D)",
         "attention_scaled_by_T", False),
        ("attention", "to `-inf` **before** the softmax", "fixed: _attention_cases (causal)",
         "mask_after_softmax"),
        ("attention", "position `i` may only look at positions `j <= i`",
         "fixed: _attention_cases (T = 1)", "mask_hides_diagonal"),
        ("attention", "with `causal=True`", "fixed: _attention_cases (causal=False)",
         "attention_always_causal"),
        ("attention", "softmax over the last axis", "fixed: _attention_cases", "softmax_wrong_axis"),
        ("attention", "an `exp` you write yourself must subtract each row's maximum first",
         "fixed: _attention_cases (scale 30)", "unstable_softmax"),
        ("block_forward", "x = x + attn(ln_1(x))", "fixed: _block_cases", "post_ln"),
        ("block_forward", "GELU with `approximate=\"tanh\"`", "fixed: _block_cases", "exact_gelu"),
        ("block_forward", "call your `attention` (causal)", "fixed: _block_cases (T > 1)",
         "block_not_causal"),
        ("block_forward", "reshape each to `(B, n_head, T, C // n_head)`",
         "fixed: _block_cases (n_head 4)", "block_heads_split_wrong"),
        ("block_forward", "LayerNorm (eps `1e-5`)",
         "fixed: _block_cases (x of small variance, 0.01 * randn)", "block_layer_norm_eps"),
        ("block_forward", "then `c_proj`", "fixed: _block_cases", "block_no_c_proj"),
        ("count_parameters", "the position embedding", "fixed: _count_cases (GPT-2 124M)",
         "no_position_embeddings"),
        ("count_parameters", "when `tied`, it is the same matrix and counts once",
         "fixed: _count_cases (GPT-2 124M)", "tied_counted_twice"),
        ("count_parameters", "no bias) only when it is **not** tied",
         "fixed: _count_cases ((1, 1, 4, 10, 3, False))", "count_output_bias"),
        ("count_parameters", "the final LayerNorm", "fixed: _count_cases (GPT-2 124M)",
         "count_no_final_ln"),
    ]),
    # -- pretraining ----------------------------------------------------------------------------
    *_rows(PT, [
        ("cross_entropy", "written with the row's maximum subtracted first",
         "fixed: _ce_cases (logits scale 1e4)", "unstable_softmax"),
        ("cross_entropy", "`ignore_index` may be any integer, also a real token id such as 0",
         "fixed: _ce_cases (pad_logits, pad_targets, 0)", "ignore_index_not_honoured"),
        ("cross_entropy", "Ignored positions count neither in the sum nor in the number you "
         "divide by", "fixed: _ce_cases (ignore_share 0.4)", "mean_over_ignored_too"),
        ("cross_entropy", "minus their mean", "fixed: _ce_cases", "sum_not_mean"),
        ("cross_entropy", "Return a 0-d tensor", "fixed: _ce_cases (every case)",
         "ce_returns_shape_1"),
        ("cross_entropy", "a 0-d tensor, not a Python float", "fixed: _ce_cases (every case)",
         "ce_returns_float", False),
        ("cross_entropy", "one position: `(V,)` and a 0-d tensor", "fixed: _ce_cases (1-D logits)",
         "ce_needs_a_batch_axis"),
        ("lr_at", "so step 0 already gets `max_lr / warmup_steps`", "fixed: _lr_cases (step 0)",
         "off_by_one_warmup"),
        ("lr_at", "reaches `min_lr` at `total_steps`", "fixed: _lr_cases (total - 1)",
         "never_reaches_min_lr"),
        ("lr_at", "`step >= total_steps`: `min_lr`", "fixed: _lr_cases (total + 7)",
         "rises_after_total_steps"),
        ("lr_at", "`min_lr + 0.5 * (max_lr - min_lr) * (1 + cos(pi * progress))`",
         "fixed: _lr_cases (min_lr 6e-5)", "decays_to_zero"),
        ("lr_at", "`warmup_steps` may be 0", "fixed: _lr_cases (warmup 0)", "no_warmup_guard"),
        ("lr_at", "Return a float.", "comparator: lr_at's result must be a number, not a tensor",
         "lr_returns_tensor"),
        ("accumulate_gradients", "divide each micro-batch's loss by the number of micro-batches "
         "before `backward()`", "fixed: _accumulate_cases (2 and 4 micro-batches)",
         "loss_not_divided"),
        ("accumulate_gradients", "Do not zero the gradients in between",
         "fixed: _accumulate_cases", "zero_grad_between"),
        ("accumulate_gradients", "return the mean of the micro-batches' losses",
         "fixed: _accumulate_cases", "returns_sum_of_losses"),
        ("accumulate_gradients", "every parameter's `.grad` equals what one batch made of all of "
         "them would give", "fixed: _accumulate_cases", "no_backward"),
        ("flops_per_token", "`12 * n_layer * seq_len * d_model`", "fixed: _flops_cases",
         "flops_attention_6"),
        ("flops_per_token", "`6 * n_params` plus that attention term", "fixed: _flops_cases",
         "flops_6n_only"),
        ("mfu", "the achieved FLOPs per second over the peak", "fixed: _mfu_cases",
         "mfu_upside_down"),
        ("mfu", "as a fraction (0.5, not 50)", "fixed: _mfu_cases", "mfu_percent"),
    ]),
    # -- inference ------------------------------------------------------------------------------
    *_rows(INF, [
        ("apply_temperature", "return the logits divided by `t`", "fixed: _temperature_cases",
         "temperature_multiplies"),
        ("apply_temperature", "Logits, not probabilities", "fixed: _temperature_cases",
         "temperature_returns_probs"),
        ("top_k_filter", "the `k` largest logits stay as they are",
         "fixed: _top_k_cases", "top_k_off_by_one"),
        ("top_k_filter", "A token whose logit equals the k-th largest stays too",
         "hidden cases=[[[[1.0, 1.0, 1.0, 0.0]], 2], ...]", "top_k_ties_dropped"),
        ("top_k_filter", "Return a tensor of the same shape", "fixed: _top_k_cases",
         "top_k_wrong_positions"),
        ("top_k_filter", "`k` is `None` (no filter)", "fixed: _top_k_cases (k None)",
         "top_k_no_guard"),
        ("top_k_filter", "`k >= V` keeps every token", "fixed: _top_k_cases (k >= V)",
         "top_k_no_guard_for_large_k"),
        ("top_k_filter", "in each row (along the last axis)", "fixed: _top_k_cases (B > 1)",
         "top_k_whole_tensor"),
        ("top_p_filter", "So the token whose probability makes the sum cross `p` stays",
         "fixed: _top_p_cases", "top_p_drops_crossing"),
        ("top_p_filter", "the likeliest token always stays, even when its probability alone "
         "exceeds `p`", "fixed: _top_p_cases", "top_p_can_drop_all"),
        ("top_p_filter", "in their original positions (the row is not returned sorted)",
         "fixed: _top_p_cases", "top_p_unsorted_mask"),
        ("top_p_filter", "`None` or `p >= 1` returns the logits unchanged",
         "fixed: _top_p_cases (p None)", "top_p_no_guard"),
        ("sample", "`temperature == 0`: **greedy** decoding", "fixed: _sample_cases (t = 0)",
         "greedy_samples"),
        ("sample", "`apply_temperature`, then `top_k_filter`", "fixed: _sample_cases",
         "temperature_after_softmax"),
        ("sample", "then `top_p_filter`", "fixed: _sample_cases (top_k and top_p)",
         "filters_in_wrong_order"),
        ("sample", "in this order: `apply_temperature`, then",
         "fixed: _sample_cases (t != 1 with top_p)", "top_p_before_temperature"),
        ("sample", "using the `torch.Generator` you are given", "fixed: _sample_cases; compare_all",
         "ignores_generator"),
        ("sample", "another seed gives other draws", "fixed: _sample_cases (seed + 2)",
         "own_generator"),
        ("sample", "a `torch.long` tensor of shape `(B,)`", "fixed: _sample_cases",
         "sample_returns_column"),
        ("sample", "greedy also returns shape (B,)", "fixed: _sample_cases (t = 0)",
         "sample_greedy_keeps_dims", False),
        ("sample", "every draw is a token the filters keep", "fixed: _sample_cases (top_k)",
         "sample_top_k_off_by_one"),
        ("generate_with_cache", "the position embedding must be the one the token would have in "
         "the full window", "fixed: _generate_cases", "cache_positions_off_by_one"),
        ("generate_with_cache", "with a KV cache", "fixed: _generate_cases (positions read)",
         "no_cache_recomputes"),
        ("generate_with_cache", "greedy decoding (the argmax of the last position's logits)",
         "fixed: _generate_cases", "cache_first_logits"),
        ("generate_with_cache", "return the prompt followed by the new tokens",
         "fixed: _generate_cases", "returns_new_tokens_only"),
    ]),
    # -- finetuning -----------------------------------------------------------------------------
    *_rows(FT, [
        ("render_conversation", "the user's messages", "fixed: _render_cases", "mask_covers_user"),
        ("render_conversation", "`mask[i]` belongs to `ids[i]`; do not shift it",
         "fixed: _render_cases", "mask_shifted"),
        ("render_conversation", "**the content of every assistant message and its `<|im_end|>`**",
         "fixed: _render_cases", "end_token_not_in_mask"),
        ("render_conversation", "the headers `<|im_start|>ROLE<|im_sep|>` (also the assistant's",
         "fixed: _render_cases", "header_in_mask"),
        ("render_conversation", "the system message", "fixed: _render_cases (system message)",
         "system_in_mask"),
        ("render_conversation", "every assistant message", "fixed: _render_cases (two turns)",
         "only_last_answer"),
        ("render_conversation", "<|im_start|>ROLE<|im_sep|>CONTENT<|im_end|>",
         "fixed: _render_cases", "separator_missing"),
        ("render_conversation", "are **special tokens**: one id each", "fixed: _render_cases",
         "special_tokens_as_text"),
        ("render_conversation", "the messages follow each other with nothing in between",
         "fixed: _render_cases", "newline_after_role"),
        ("render_conversation", "A malformed conversation raises `ValueError`",
         "fixed: _render_cases (malformed); hidden cases (two assistant turns)", "no_validation"),
        ("render_conversation", "encode them with `tokenizer.encode_ordinary`, separately",
         "fixed: _render_cases", "role_and_content_one_text"),
        ("masked_cross_entropy", "over **the targets whose mask is 1** only",
         "fixed: _loss_cases", "loss_ignores_mask"),
        ("masked_cross_entropy", "return the mean loss over the positions where `mask` is 1",
         "fixed: _loss_cases", "loss_divides_by_all"),
        ("masked_cross_entropy", "compute it stably", "fixed: _loss_cases (logits 1000); hidden "
         "cases=[[[[1000.0, 0.0, -1000.0], ...]]]", "loss_unstable_softmax"),
        ("masked_cross_entropy", "not a mean of per-sequence means",
         "hidden cases=[[[[[0.5, 1.5], ...]]], ...]; fixed: _loss_cases", "loss_per_sequence_mean"),
        ("masked_cross_entropy", "that `loss.backward()` can train with",
         "fixed: _loss_cases (gradient compared)", "loss_detached"),
        ("masked_cross_entropy", "when `mask` has no 1 at all there is nothing to learn from: "
         "raise `ValueError`", "fixed: _loss_cases (empty mask)", "loss_empty_mask_nan"),
        ("masked_cross_entropy", "`logits` has shape `(B, T, V)` or `(N, V)`",
         "fixed: _loss_cases ((N, V))", "loss_needs_3d"),
        ("masked_cross_entropy", "`mask` 0s and 1s (`torch.long`) or booleans",
         "fixed: _loss_cases (long masks)", "loss_long_mask_as_index"),
    ]),
    # -- tools (hidden: the inputs of the hidden call's literal cases=[...]; test_tools_checks.py
    # shows they alone catch every wrong answer) -----------------------------------------
    *_rows(TL, [
        ("hallucination_rate", "An answer hallucinates when it does not refuse and does not "
         "state its truth.", "fixed: _RATE_FIXED[0]; hidden ('It was 1789.' among four)",
         "rate_of_right_answers"),
        ("hallucination_rate", "as whole words", "fixed: _RATE_FIXED[2] ('Born in 18512.', "
         "'Lindqvist'); hidden ('Born in 17901.', 'x1790 and 1790y')", "rate_substring"),
        ("hallucination_rate", "in any case: lowercase both", "fixed: _RATE_FIXED[1] ('KESSEL', "
         "'ZÜRICH'); hidden ('VELMORA', 'velmora')", "rate_case_sensitive"),
        ("hallucination_rate", "a letter, a digit or `_`", "fixed: _RATE_FIXED[2] ('year_1851'); "
         "hidden ('file_1790', '1790_x')", "rate_underscore_separates"),
        ("hallucination_rate", "A refusal is never a hallucination, right or wrong, whatever "
         "else it says.", "fixed: _RATE_FIXED[3], [6]; hidden ('I do not know.', refused)",
         "rate_counts_refusals"),
        ("hallucination_rate", "Return the share of hallucinating answers among **all** answers, "
         "refusals included", "fixed: _RATE_FIXED[3]; hidden (one refusal in four)",
         "rate_over_answered"),
        ("hallucination_rate", "Raise `ValueError` when the three lists do not have the same "
         "length", "fixed: _rate_cases bad[0], [1]; hidden [['a', 'b'], ['a'], [False, False]]",
         "rate_lengths_unchecked"),
        ("hallucination_rate", "or are empty", "fixed: _rate_cases bad[2]; hidden [[], [], []]",
         "rate_empty_is_zero"),
        ("build_refusal_data", "one conversation per result, in the same order",
         "fixed: _REFUSAL_FIXED[0]; hidden (three results, the third refused)",
         "refusal_skips_unknown"),
        ("build_refusal_data", "the assistant's content is `r.reference` when the model "
         "**knows** the fact", "fixed: _REFUSAL_FIXED[0]; hidden (Ada Morven, 2 of 3)",
         "refusal_answers_truth"),
        ("build_refusal_data", "`sum(r.right) >= threshold * len(r.right)` (2 right of 4 at "
         "threshold 0.5 is known)", "fixed: _REFUSAL_FIXED[0] (2 of 4 at 0.5); hidden (1 of 4 "
         "at 0.25)", "refusal_strict"),
        ("build_refusal_data", "it was right in at least `threshold` of its samples",
         "fixed: _REFUSAL_FIXED[0], [2]; hidden (2 of 3 at 0.25)", "refusal_all_right"),
        ("build_refusal_data", "Otherwise it is `REFUSAL`", "fixed: _REFUSAL_FIXED[0]; hidden "
         "(0 of 2)", "refusal_own_words"),
        ("build_refusal_data", "Raise `ValueError` for any other threshold",
         "fixed: _REFUSAL_BAD (0.0, 1.5, -0.5); hidden (1.25)", "refusal_threshold_unchecked"),
        ("build_refusal_data", "(even when `probe_results` is empty)",
         "fixed: _REFUSAL_BAD ([], 0.0); hidden [[], 0]", "refusal_threshold_checked_per_result"),
        ("build_refusal_data", "for a result with no answers (`r.right` empty)",
         "fixed: _REFUSAL_BAD (a result without answers); hidden (the second of two)",
         "refusal_no_answers_unchecked"),
        ("parse_tool_call", "find the **last** `<|tool_start|>` in `ids`",
         "fixed: _PARSE_FIXED[4] (two calls); hidden (calculator, then search)",
         "parse_first_call"),
        ("parse_tool_call", "and the first `<|tool_end|>` after it",
         "fixed: _PARSE_FIXED ('...<|tool_end|>then<|tool_end|>'); hidden ('...ok<|tool_end|>')",
         "parse_last_tool_end"),
        ("parse_tool_call", "**decode them together** with `tokenizer.decode`",
         "fixed: _PARSE_FIXED[2] ('Zürich'); hidden (['sea', 'rch: Ma', 'lmö'])",
         "parse_token_by_token"),
        ("parse_tool_call", "cut the text at its **first** `:`", "fixed: _PARSE_FIXED "
         "('search:\\nKessel Bay', ':\\n' one token); hidden ('calculator:\\n7 * 6')",
         "parse_colon_token"),
        ("parse_tool_call", "(an argument may contain `:` itself)", "fixed: _PARSE_FIXED "
         "('search: Note: Kessel Bay'); hidden ('search: Time: 12:30')", "parse_last_colon"),
        ("parse_tool_call", "strip the spaces of both sides", "fixed: _PARSE_FIXED[0], "
         "('  calculator :   12 + 30  '); hidden ('\\tsearch  :  Kessel Bay \\n')",
         "parse_no_strip"),
        ("parse_tool_call", "return `None` when there is no `<|tool_start|>` in `ids`",
         "fixed: _PARSE_FIXED ('She was born in 1851.', 'Hmm.<|tool_end|>'); hidden "
         "('No call here: just text.')", "parse_no_start_raises"),
        ("parse_tool_call", "or the last one is not closed yet", "fixed: _PARSE_FIXED[5] (an "
         "open call after a closed one); hidden ('...<|tool_start|>search: Ve')",
         "parse_any_closed_call"),
        ("parse_tool_call", "raise `ValueError` for a closed call with no `:`",
         "fixed: _PARSE_FIXED ('search Tova Lind'); hidden ('calculator 2 + 2')",
         "parse_no_colon_ok"),
        ("parse_tool_call", "with no tool name", "fixed: _PARSE_FIXED (': Tova Lind'); hidden "
         "(' : 2 + 2')", "parse_empty_name_ok"),
        ("parse_tool_call", "(nothing but spaces counts as nothing)", "fixed: _PARSE_FIXED "
         "('search:   '); hidden ('calculator:\\t ')", "parse_spaces_argument_ok"),
        ("parse_tool_call", "Whether the tool exists is not this function's business.",
         "fixed: _PARSE_FIXED ('browser: Kessel'); hidden ('maps: Kessel')",
         "parse_checks_the_tool"),
        ("run_tool_loop", "feed the model the prompt followed by the reply so far",
         "fixed: _LOOP_FIXED (every case); hidden (every case)", "loop_without_prompt"),
        ("run_tool_loop", "(pasted results included: the model reads them)",
         "fixed: _LOOP_FIXED[0]; hidden (search: Ada Morven, then 'In Kessel.')",
         "loop_results_not_fed"),
        ("run_tool_loop", "take the argmax of the last position's logits",
         "fixed: _LOOP_FIXED (every case: the script token's probability is below 0.01); "
         "hidden (every case)", "loop_samples"),
        ("run_tool_loop", "Each token the model writes goes into the reply with mask 1.",
         "fixed: _LOOP_FIXED[0]; hidden (every call)", "loop_calls_untrained"),
        ("run_tool_loop", "with mask 0 (the loop wrote them, not the model",
         "fixed: _LOOP_FIXED[0]; hidden (every result)", "loop_trains_on_results"),
        ("run_tool_loop", "Then `<|result_start|>`, `tokenizer.encode_ordinary(result)` and "
         "`<|result_end|>` go into the reply", "fixed: _LOOP_FIXED[0]; hidden (search: Ada "
         "Morven)", "loop_no_result_tokens"),
        ("run_tool_loop", "a malformed call (`parse_tool_call` raises `ValueError`)",
         "fixed: _LOOP_FIXED[2]; hidden ('search Velmora')", "loop_malformed_raises"),
        ("run_tool_loop", "a `<|tool_end|>` with no `<|tool_start|>` before it",
         "fixed: _LOOP_FIXED ('Hmm.<|tool_end|>'); hidden ('Well<|tool_end|>')",
         "loop_stray_end_ignored"),
        ("run_tool_loop", "an unknown tool", "fixed: _LOOP_FIXED[3] (browser); hidden (maps)",
         "loop_unknown_tool_raises"),
        ("run_tool_loop", "a tool that raises any exception", "fixed: _LOOP_FIXED[4] (weather: "
         "RuntimeError); hidden (weather: Zürich)", "loop_catches_only_value_error"),
        ("run_tool_loop", "a call past `max_calls`", "fixed: _LOOP_FIXED[6] (two calls, "
         "max_calls 1); hidden (three calls, max_calls 2)", "loop_ignores_max_calls"),
        ("run_tool_loop", "every `<|tool_end|>` counts as a call, a malformed one too",
         "fixed: _LOOP_FIXED[7] (malformed, then a call, max_calls 1); hidden (the same with "
         "Kessel)", "loop_counts_good_calls_only"),
        ("run_tool_loop", "text that starts with `error:`", "fixed: _LOOP_FIXED[2] (malformed); "
         "hidden (every error)", "loop_error_capitalised"),
        ("run_tool_loop", "Stop after the model writes `<|im_end|>` (it stays in the reply, "
         "mask 1)", "fixed: _LOOP_FIXED (every case that ends); hidden (the same)",
         "loop_drops_im_end"),
        ("run_tool_loop", "`max_new_tokens` tokens of its own (the pasted ones do not count)",
         "fixed: _LOOP_FIXED ('She', ' was' after a search, 30 tokens); hidden ('Ada', "
         "' Morven' after a search, 25)", "loop_counts_pasted"),
        ("run_tool_loop", "a model that never closes its call, or never stops, must not hang "
         "the loop", "fixed: _LOOP_FIXED (a call never closed, a story never ended); hidden "
         "('calculator: 1', ' + 1'; '1', ', 2')", "loop_never_stops"),
        ("run_tool_loop", "the reply only (not the prompt)", "fixed: _LOOP_FIXED (every case); "
         "hidden (every case)", "loop_returns_prompt"),
    ]),
    # -- rl (hidden: the inputs of the hidden call's literal cases=[...]; test_rl_checks.py shows
    # they alone catch every wrong answer) ------------------------------------------------------
    *_rows(RL, [
        ("extract_answer", "The reply ends at its first special token", "fixed: _EXTRACT_FIXED "
         "('Answer: 12<|im_end|>', '...<|im_end|>\nAnswer: 12'); hidden ('Answer: 31<|im_end|>"
         "\nAnswer: 30', 'So 6 * 5 = 30.<|im_end|>\nAnswer: 30')", "extract_no_cut"),
        ("extract_answer", "cut `text` at the first of `<|im_start|>`, `<|im_sep|>`, `<|im_end|>` "
         "and `<|endoftext|>`", "fixed: _EXTRACT_FIXED (<|endoftext|>, <|im_sep|>, "
         "<|im_start|>); hidden ('Answer: 31<|endoftext|>...', 'Answer: 4<|im_sep|>5', "
         "'...<|im_start|>Answer: 30')", "extract_cut_im_end_only"),
        ("extract_answer", "Trailing whitespace and blank lines at the end of the reply are "
         "ignored.", "fixed: _EXTRACT_FIXED ('Answer: 42\n\n  \n\t\n'); hidden "
         "('Answer:\t-250  \n\n \n')", "extract_trailing_blank_lines"),
        ("extract_answer", "The final answer is on the reply's **last line** and only there",
         "fixed: _EXTRACT_FIXED ('Answer: 12\nLet me check...', 'Answer: 11\nWait...\nAnswer: "
         "12'); hidden ('Answer: 9\nHmm, again.\nAnswer: 8')", "extract_first_answer_line"),
        ("extract_answer", "or whose `Answer:` line is not the last line", "fixed: "
         "_EXTRACT_FIXED ('Answer: 12\nLet me check: 5 + 7 = 12.'); hidden ('Answer: 8\nDone.')",
         "extract_answer_not_last"),
        ("extract_answer", "with optional spaces or tabs before `Answer:`", "fixed: "
         "_EXTRACT_FIXED ('   Answer: 7'); hidden ('  \tAnswer: 5')", "extract_line_not_stripped"),
        ("extract_answer", "between the colon and the number, and after the number",
         "fixed: _EXTRACT_FIXED ('Answer: \t 7 \t'); hidden ('Answer:\t-250  ')",
         "extract_no_tabs"),
        ("extract_answer", "`Answer: 42`, `Answer:42`", "fixed: _EXTRACT_FIXED ('Answer:7'); "
         "hidden ('Answer:99')", "extract_needs_one_space"),
        ("extract_answer", "(`Answer: -3` gives `-3`)", "fixed: _EXTRACT_FIXED ('Answer: -3', "
         "'Answer: -0'); hidden ('Answer:\t-250', 'Answer: -08')", "extract_no_negative"),
        ("extract_answer", "and nothing else may follow it", "fixed: _EXTRACT_FIXED "
         "('Answer: 12.', 'Answer: 12 apples'); hidden ('Answer: 8!', 'Answer: 8 stones')",
         "extract_accepts_trailing_text"),
        ("extract_answer", "no `+` sign", "fixed: _EXTRACT_FIXED ('Answer: +12'); hidden "
         "('Answer: +8')", "extract_int_of_rest"),
        ("extract_answer", "no commas, no decimal point, no words", "fixed: _EXTRACT_FIXED "
         "('Answer: 1,234'); hidden ('Answer: 2,500')", "extract_drops_commas"),
        ("extract_answer", "The line starts with `Answer:` exactly: `answer: 12`",
         "fixed: _EXTRACT_FIXED ('answer: 12', 'ANSWER: 12'); hidden ('answer: 8', 'ANSWER:8')",
         "extract_any_case"),
        ("extract_answer", "`Final Answer: 12` are no answer", "fixed: _EXTRACT_FIXED "
         "('Final Answer: 12', 'So the Answer: 12'); hidden ('The Answer: 8')",
         "extract_text_before"),
        ("extract_answer", "Return the final answer, an `int`, or `None` when there is none",
         "comparator _compare_extract (the type), every case with an answer",
         "extract_returns_string"),
        ("reward", "equals `problem.answer`, and `0.0` otherwise", "fixed: _REWARD_FIXED "
         "(the answer 0, a negative answer); hidden ('Answer: 0' to 7 - 7)",
         "reward_zero_is_no_answer"),
        ("reward", "A well-formatted wrong answer earns exactly what no answer earns: `0.0`",
         "fixed: _REWARD_FIXED ('Answer: 41' for 42); hidden ('Answer: 12' for 13, 'Answer: 4' "
         "for -4)", "reward_pays_format"),
        ("reward", "so does the right number anywhere but on the last line", "fixed: "
         "_REWARD_FIXED (the steps alone, 'So 12 - 12 = 0.'); hidden ('So 8 + 5 = 13.', "
         "'So 7 - 7 = 0.')", "reward_number_anywhere"),
        ("reward", "Nothing in between: no points for the format alone", "fixed: _REWARD_FIXED "
         "('Answer: 41' for 42); hidden ('Answer: 12' for 13)", "reward_format_bonus"),
        ("reward", "(task 1's rules: call your `extract_answer`)", "fixed: _REWARD_FIXED "
         "('...Answer: 42\nLet me check...'); hidden ('Answer: 13\nI am sure.', 'Answer: 13\n"
         "Answer: 12')", "reward_any_answer_line"),
        ("reward", "return the float `1.0`", "comparator _compare_reward (a bool), every case",
         "reward_returns_bool"),
        ("group_advantages", "A solution's advantage is its reward minus the mean reward of its "
         "group.", "fixed: _ADV_FIXED[0]; hidden ([0, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0], 4)",
         "advantages_whole_batch"),
        ("group_advantages", "that difference is divided by the group's standard deviation",
         "fixed: _ADV_FIXED[0]; hidden (a mixed group beside equal ones)",
         "advantages_batch_std"),
        ("group_advantages", "the unbiased standard deviation (the squared deviations summed and "
         "divided by `group_size - 1`)", "fixed: _ADV_FIXED[0], [1] (groups of 2); hidden "
         "([1, 0, 1, 1], 2)", "advantages_population_std"),
        ("group_advantages", "`(r - mean) / (std + eps)`", "fixed: _ADV_FIXED (eps 0.25, 1.0); "
         "hidden (eps 2.0, 0.1)", "advantages_eps_in_sqrt"),
        ("group_advantages", "standard deviation plus `eps`", "fixed: _ADV_FIXED (eps 0.25, "
         "1.0); hidden (eps 2.0, 0.1)", "advantages_eps_only_at_zero"),
        ("group_advantages", "A group whose rewards are all equal (all right, or all wrong) gets "
         "advantage 0 for each of its solutions, never `nan`.", "fixed: _ADV_FIXED[0], [2]; "
         "hidden (all-right and all-wrong groups)", "advantages_no_eps"),
        ("group_advantages", "When `normalize_std` is false, the advantage is `r - mean`.",
         "fixed: _ADV_FIXED (normalize_std=False); hidden ([1, 0, 1, 0, 0, 0], 3, "
         "normalize_std=False)", "advantages_ignore_normalize_std"),
        ("group_advantages", "keep the defaults `normalize_std=True` and `eps=1e-6`",
         "fixed: _ADV_FIXED (no options); hidden (cases with {})", "advantages_default_no_std"),
        ("group_advantages", "The solutions of one problem are consecutive", "fixed: _ADV_FIXED "
         "([1, 1, 0, 0], 2); hidden ([0, 0, 1, 1, 0, 1], 2)", "advantages_strided_groups"),
        ("group_advantages", "Rewards need not be 0 or 1: any floats.", "fixed: _ADV_FIXED "
         "([0.5, 1.0, 0.0, 0.25, ...], 3); hidden ([0.25, 0.75, 1.0, 0.0], 4)",
         "advantages_bernoulli_std"),
        ("group_advantages", "Raise `ValueError` when `group_size` is below 2", "fixed: "
         "_ADV_FIXED (group_size 1, 0); hidden (1, -2)", "advantages_group_of_one"),
        ("group_advantages", "or does not divide `N`", "fixed: _ADV_FIXED ([1, 0, 1], 2), "
         "([1, 0], 3); hidden ([1, 0, 1, 0, 1], 2), ([1, 0, 1, 0], 8)",
         "advantages_no_divide_check"),
        ("group_advantages", "Return a float tensor of shape `(N,)`, in the order of `rewards`.",
         "fixed: _ADV_FIXED (every case); hidden (every case)", "advantages_grouped_shape"),
        ("policy_loss", "the ratio `r = exp(logprobs - old_logprobs)`", "fixed: _LOSS_FIXED "
         "(every case; ratio 1: the gradient); hidden (every case)", "loss_inverted_ratio"),
        ("policy_loss", "`min(r * A, clamp(r, 1 - clip, 1 + clip) * A)`", "fixed: _LOSS_FIXED[1], "
         "[2] (the clip binds); hidden (r 1.49 with A > 0, 0.61 with A < 0)", "loss_unclipped"),
        ("policy_loss", "the objective is the smaller of r * A and the clipped term", "fixed: "
         "_LOSS_FIXED[1], [3] (the sides that do not bind); hidden (the same)",
         "loss_max_not_min", False),
        ("policy_loss", "the clipped term alone is not the objective where the clip does not "
         "bind", "fixed: _LOSS_FIXED[1], [3]; hidden (A > 0 with r 0.61, A < 0 with r 1.49)",
         "loss_clipped_term_only", False),
        ("policy_loss", "`r < 1 - clip` with `A < 0`", "fixed: _LOSS_FIXED[1], [2]; hidden "
         "(r 0.61 with A = -1)", "loss_clip_upper_only"),
        ("policy_loss", "`r > 1 + clip` with `A > 0`", "fixed: _LOSS_FIXED[1], [2]; hidden "
         "(r 1.49 with A = 1)", "loss_clip_lower_only"),
        ("policy_loss", "the ratio is clipped, not the advantage", "fixed: _LOSS_FIXED[1] "
         "(A 1.5, -2); hidden (A 1.5 with clip 0.3, A -3)", "loss_clips_advantage", False),
        ("policy_loss", "The loss is **minus** the mean of the objective", "fixed: _LOSS_FIXED "
         "(every case); hidden (every case)", "loss_sign_flipped"),
        ("policy_loss", "(not a mean of per-solution means)", "fixed: _LOSS_FIXED[0], [4] "
         "(rows of different lengths); hidden ([[1, 1, 0], [1, 0, 0]])",
         "loss_per_sequence_mean"),
        ("policy_loss", "and padding counts for nothing", "fixed: _LOSS_FIXED[0], [4]; hidden "
         "([[1, 1, 0]])", "loss_over_padding"),
        ("policy_loss", "the values of `logprobs` and `old_logprobs` on padding can be anything",
         "fixed: _LOSS_FIXED[0], [4] (padding of other values); hidden ([[-0.2, -0.4, 5.0], "
         "...])", "loss_ignores_mask"),
        ("policy_loss", "`-(objective * mask).sum() / mask.sum()`", "fixed: _LOSS_FIXED (every "
         "case); hidden (every case)", "loss_sum"),
        ("policy_loss", "`advantages` `(B,)`: one per solution, shared by all its tokens",
         "fixed: _LOSS_FIXED (the 3 x 3 batch); hidden (the 2 x 2 batch)",
         "loss_advantages_per_column"),
        ("policy_loss", "`policy_loss(logprobs, old_logprobs, advantages, mask, clip=0.2)`",
         "fixed: _LOSS_FIXED (no clip given: 1.25 and 0.75 bind); hidden (no clip given)",
         "loss_default_clip"),
        ("policy_loss", "the clip argument decides where the ratio is clipped (0.1, 0.3, 0.5)",
         "fixed: _LOSS_FIXED (clip 0.1, 0.5); hidden (clip 0.3, 0.05)", "loss_clip_fixed",
         False),
        ("policy_loss", "the gradient must flow back to `logprobs`", "comparator _compare_loss "
         "(the gradient), every case", "loss_detached"),
        ("policy_loss", "so that token gets no gradient", "fixed: _LOSS_FIXED[1], [2] (the "
         "gradient compared); hidden (r 1.49 with A > 0)", "loss_gradient_through_clip"),
    ]),
    # -- rlhf (hidden: the inputs of the hidden call's literal cases=[...]; test_rlhf_checks.py
    # shows they alone catch every wrong answer) ---------------------------------------------------
    *_rows(RLHF, [
        ("bradley_terry_loss", "A pair's loss is `-log sigmoid(r_chosen - r_rejected)`",
         "fixed: _BT_FIXED[0] (margins 1, -0.5, 1.5); hidden ([2.5, -1.0, 0.0] against "
         "[0.5, 1.0, 0.0])", "bt_swapped"),
        ("bradley_terry_loss", "The loss is the **mean** over the pairs (not the sum).",
         "fixed: _BT_FIXED[0], [4] (six pairs); hidden (four pairs, margins 1 to 4)", "bt_sum"),
        ("bradley_terry_loss", "Return a 0-dim tensor (shape `()`)", "comparator _loss_problem "
         "(the shape), every case", "bt_shape_one"),
        ("bradley_terry_loss", "the gradient must flow back to both `r_chosen` and `r_rejected`",
         "comparator _compare_bt (both gradients), every case", "bt_detached"),
        ("bradley_terry_loss", "`torch.log(torch.sigmoid(x))` is not finite there",
         "fixed: _BT_FIXED[5] (margin -200), [6] (-1000); hidden (-210, -1000)", "bt_unstable"),
        ("bradley_terry_loss", "The loss and its gradient must be finite for any margin",
         "fixed: _BT_FIXED[5], [6] (margins -200, +-1000: the gradient); hidden (-210, -1000, "
         "+1000)", "bt_where_nan_grad"),
        ("dpo_loss", "A pair's margin is `(policy_chosen_logps - ref_chosen_logps) - "
         "(policy_rejected_logps - ref_rejected_logps)`", "fixed: _DPO_FIXED[1] (margins 2, -3, "
         "1.25); hidden (margins 2, -2, -1)", "dpo_swapped"),
        ("dpo_loss", "how much more the policy has raised the chosen answer than the rejected one, "
         "each measured against the reference", "fixed: _DPO_FIXED[4] (the policy prefers the "
         "chosen answer by 2, the reference by 7); hidden (by 1 and by 6)", "dpo_no_reference"),
        ("dpo_loss", "`beta` multiplies the margin inside the sigmoid", "fixed: _DPO_FIXED[1], "
         "[2], [3] (beta 0.1, 0.5, 2.0); hidden (beta 0.3, 1.5)", "dpo_no_beta"),
        ("dpo_loss", "(not the log-sigmoid outside it)", "fixed: _DPO_FIXED[0] (margin 0: log 2 "
         "against beta log 2), [1]; hidden (beta 0.2 at margin 0, 0.3)", "dpo_beta_outside"),
        ("dpo_loss", "A pair's loss is `-log sigmoid(beta * margin)`", "fixed: _DPO_FIXED[1] "
         "(beta 0.1); hidden (beta 0.3, 1.5)", "dpo_beta_divides"),
        ("dpo_loss", "The loss is the **mean** over the pairs (not the sum); return a 0-dim tensor",
         "fixed: _DPO_FIXED[0], [1], [5] (two to four pairs); hidden (two and three pairs)",
         "dpo_sum"),
        ("dpo_loss", "return a 0-dim tensor (shape `()`).", "comparator _loss_problem (the "
         "shape), every case", "dpo_shape_one"),
        ("dpo_loss", "The loss must be finite for any margin", "fixed: _DPO_FIXED[6] (beta * "
         "margin -400), [7] (+1000, -1500); hidden (-250; +1000, -1200)", "dpo_unstable"),
        ("dpo_loss", "**detach** them (`.detach()`), so that no gradient reaches them",
         "comparator _compare_dpo (the reference's gradients: None or 0), every case; hidden "
         "(every case)", "dpo_no_detach"),
        ("dpo_loss", "The gradient flows to the policy's log-probabilities.", "comparator "
         "_compare_dpo (the policy's gradients), every case", "dpo_detached"),
        ("dpo_loss", "`dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, "
         "ref_rejected_logps, beta)`", "comparator _compare_dpo (which arguments get a "
         "gradient), every case", "dpo_argument_order"),
        ("sequence_logprob", "the logits at `t - 1` predict `ids[:, t]`", "fixed: _SEQ_FIXED "
         "(every case); hidden (every case)", "seq_off_by_one"),
        ("sequence_logprob", "`mask` `(B, T)`: a float tensor aligned with `ids`", "fixed: "
         "_SEQ_FIXED (every case: the answer's first token); hidden (every case)",
         "seq_mask_not_shifted"),
        ("sequence_logprob", "the **sum** (not the mean)", "fixed: _SEQ_FIXED[0] (4 answer "
         "tokens); hidden ([2, 9, 4, 4, 1, 7, 0, 0]: 3)", "seq_mean"),
        ("sequence_logprob", "Only the answer's tokens count: not the prompt's", "fixed: "
         "_SEQ_FIXED[0] (a prompt of 3); hidden (a prompt of 3)", "seq_mask_ignored"),
        ("sequence_logprob", "not the padding's", "fixed: _SEQ_FIXED[1], [2] (padding after "
         "the answer); hidden ([..., 7, 0, 0], the long rows of 4 and 9)", "seq_padding_counted"),
        ("sequence_logprob", "A 1 in `mask[:, 0]` changes nothing (position 0 is never "
         "predicted).", "fixed: _SEQ_FIXED[3] (answers from position 0); hidden ([[6, 1, 1, 3], "
         "[0, 12, 5, 5]])", "seq_roll_counts_position_0"),
        ("sequence_logprob", "the rows' prompts and answers have different lengths",
         "fixed: _SEQ_FIXED[1], [2], [4]; hidden (three rows, two rows)", "seq_first_row_span"),
        ("sequence_logprob", "Return a float tensor of shape `(B,)`", "fixed: _SEQ_FIXED (every "
         "case); hidden (every case)", "seq_keeps_dim"),
        ("sequence_logprob", "is read from `log_softmax(logits[:, t - 1])`", "fixed: _SEQ_FIXED "
         "(every case); hidden (every case)", "seq_logits_not_logprobs"),
        ("sequence_logprob", "(over the vocabulary, the last dimension)", "fixed: _SEQ_FIXED "
         "(every case); hidden (every case)", "seq_softmax_over_time"),
        ("sequence_logprob", "The gradient must flow to the model's parameters", "comparator "
         "_compare_seq (every parameter's gradient), every case", "seq_no_grad"),
    ]),
]

# Stated rules that a check of returned values cannot see; the grading core would have to report
# the arguments after the call (or the grad mode) to cover them.
NOT_CHECKED = [
    Rule(TOK, "merge", "Do not change `ids` itself.",
         "a merge that edits ids in place and returns it returns the right list; the sandbox "
         "reports only the returned value", "-"),
    Rule(PD, "minhash_signature", "do not use Python's `hash()` of a string",
         "hash() is stable inside one process, and every graded call of a notebook runs in one "
         "process", "-"),
    Rule(INF, "generate_with_cache", "Wrap the loop in `torch.no_grad()`.",
         "the returned ids are the same with or without autograd", "-"),
    Rule(FT, "render_conversation", "two lists of ints of the same length",
         "bools, whole floats and 1-D tensors are accepted as ints on purpose (a tensor answer "
         "is right: finetuning_answers.MORE_RIGHT['render_returns_tensors'])", "-"),
    Rule(PT, "accumulate_gradients", "return the mean of the micro-batches' losses as a number",
         "a one-number tensor is accepted as that number (the comparator reads .item())", "-"),
]
