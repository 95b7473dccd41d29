"""How an answer distribution becomes P(yes): pure functions shared by every verifier backend.

P(yes) = P_yes / (P_yes + P_no), where P_yes sums the probability of every spelling of "yes" (" Yes",
"yes", "YES.", ...) and P_no of "no", read from the *full* next-token distribution (hf backend) or from the
top log-probs a server returns (openai backend). When neither appears, the score is NaN with a reason:
never 0 or 1 by fallback (the reference falls back to the greedy text, which turns "unknown" into 0 or 1).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from dvreward.schemas import QuestionScore

YES, NO = "yes", "no"
_STRIP = re.compile(r"[\s.,!?;:'\"`*_()\[\]]+")
MIN_MASS = 1e-12  # below this the two masses carry no information

# Bounded NaN reasons (also the metric label values).
REASON_NO_MASS = "no_yes_no_mass"
REASON_NOT_IN_TOP = "yes_no_not_in_top_logprobs"
REASON_BAD_RESPONSE = "bad_server_response"
REASON_NO_LOGPROBS = "server_returned_no_logprobs"
REASON_BACKEND = "backend_error"
REASON_TIMEOUT = "timeout"


def normalise_answer(token: str) -> str:
    """Lower-case, strip spaces, punctuation and the byte-level-BPE space marks ("Ġ", "▁")."""
    return _STRIP.sub("", token.replace("Ġ", " ").replace("▁", " ")).lower()


def answer_of(token: str) -> str | None:
    n = normalise_answer(token)
    return n if n in (YES, NO) else None


def yes_no_token_ids(tokenizer, vocab_size: int | None = None) -> tuple[list[int], list[int]]:
    """Every token id whose decoded text is a spelling of yes / no (searched once at load time)."""
    yes, no = [], []
    n = vocab_size or len(tokenizer)
    for i in range(min(n, len(tokenizer))):
        a = answer_of(tokenizer.decode([i]))
        if a == YES:
            yes.append(i)
        elif a == NO:
            no.append(i)
    if not yes or not no:
        raise ValueError("the tokenizer has no token that decodes to yes or no; this model cannot verify")
    return yes, no


def score_from_masses(qid: str, yes_mass: float, no_mass: float) -> QuestionScore:
    total = yes_mass + no_mass
    if not math.isfinite(total) or total < MIN_MASS:
        return QuestionScore(id=qid, yes_mass=_finite(yes_mass), no_mass=_finite(no_mass), reason=REASON_NO_MASS)
    return QuestionScore(id=qid, p_yes=min(1.0, max(0.0, yes_mass / total)), yes_mass=yes_mass, no_mass=no_mass)


def score_from_top_logprobs(qid: str, top: Iterable[tuple[str, float]]) -> QuestionScore:
    """Sum exp(logprob) of the yes and no spellings among (token, logprob) alternatives."""
    yes = no = 0.0
    seen = False
    for token, logprob in top:
        a = answer_of(token)
        if a is None or logprob is None:
            continue
        seen = True
        if a == YES:
            yes += math.exp(logprob)
        else:
            no += math.exp(logprob)
    if not seen:
        return QuestionScore(id=qid, reason=REASON_NOT_IN_TOP)
    return score_from_masses(qid, yes, no)


def failed(qid: str, reason: str) -> QuestionScore:
    return QuestionScore(id=qid, reason=reason)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) and x >= 0 else None
