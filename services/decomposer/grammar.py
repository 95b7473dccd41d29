"""A small deterministic parser from compositional prompts to a scene graph (the ``rules`` backend).

It reads prompts of the shapes GenEval, T2I-CompBench and ShapesWorld use: noun phrases with counts,
colours and other attributes, joined by "and", commas and "with", linked by spatial relations ("left of",
"on top of"), actions ("holding"), negations ("without", "no"), quoted text to render, and style,
viewpoint and environment phrases. What it does not understand it reports as ``unparsed`` spans instead
of guessing: the decomposition is then marked incomplete.

Entry point: ``parse_prompt(prompt, lexicon) -> SceneGraph``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from decomposer.lexicon import NUMBER_WORDS, Lexicon

# Function words that never belong inside a noun phrase; seeing one there means we did not understand.
_STOPWORDS = {
    "the", "a", "an", "is", "are", "was", "were", "that", "which", "who", "it", "its", "their", "his", "her",
    "to", "from", "for", "at", "as", "like", "than", "very", "while", "where", "when", "there", "this",
    "these", "those", "be", "being", "been", "has", "have", "had", "does", "do", "did", "can", "will", "into",
    "onto", "through", "up", "down", "out", "about", "and", "or", "but", "so", "if", "then", "they", "he",
    "she", "them", "him", "one's", "each", "other", "another", "both", "all", "every", "between", "among",
    "against", "around", "across", "toward", "towards", "along", "after", "before", "during", "until",
}  # fmt: skip
_MAX_NOUN_WORDS = 3
_QUOTE_RE = re.compile(r"\"([^\"]{1,200})\"|“([^”]{1,200})”|(?:(?<=\s)|^)'([^']{1,200})'(?=[\s.,;:!?]|$)")
_TEXT_LINKS = ["that says", "that reads", "which says", "which reads", "saying", "reading", "with the text",
               "with the words", "with the word", "that read", "that say", "labeled", "labelled",
               "with text", "written on it", "text"]  # fmt: skip


@dataclass
class Entity:
    noun: str  # singular, lower-case
    surface: str  # as written (keeps the plural)
    count: int | None = None  # exact number when stated
    plural: bool = False
    attributes: list[tuple[str, str]] = field(default_factory=list)  # (detail, value)


@dataclass
class Relation:
    subject: int
    object: int
    predicate: str
    detail: str  # spatial | action | part


@dataclass
class SceneGraph:
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    actions: list[tuple[int, str]] = field(default_factory=list)  # intransitive (entity, verb)
    negated: list[Entity] = field(default_factory=list)
    texts: list[tuple[str, int | None]] = field(default_factory=list)  # (text, entity it is on)
    globals: list[tuple[str, str]] = field(default_factory=list)  # (style|environment|viewpoint, value)
    unparsed: list[str] = field(default_factory=list)


def singularize(word: str, lex: Lexicon) -> str:
    """Singular form of one word (the last word of a compound noun is the one that inflects)."""
    w = word.lower()
    if w in lex.irregular_plurals:
        return lex.irregular_plurals[w]
    if w in lex.uncountable_s or len(w) <= 2:
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("ches", "shes", "sses", "xes", "zes")):
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us")):
        return w[:-1]
    return w


def singularize_noun(noun: str, lex: Lexicon) -> str:
    words = noun.split()
    return " ".join([*words[:-1], singularize(words[-1], lex)]) if words else noun


def pluralize_noun(noun: str, lex: Lexicon) -> str:
    words = noun.split()
    if not words:
        return noun
    w = words[-1]
    inverse = {s: p for p, s in lex.irregular_plurals.items()}
    if w in inverse:
        p = inverse[w]
    elif w.endswith("y") and len(w) > 1 and w[-2] not in "aeiou":
        p = w[:-1] + "ies"
    elif w.endswith(("s", "sh", "ch", "x", "z")):
        p = w + "es"
    else:
        p = w + "s"
    return " ".join([*words[:-1], p])


class _Matcher:
    """Longest-first phrase matching over a token list."""

    def __init__(self, phrases):
        self.by_len: dict[int, set[tuple[str, ...]]] = {}
        for p in phrases:
            toks = tuple(p.split())
            self.by_len.setdefault(len(toks), set()).add(toks)
        self.lengths = sorted(self.by_len, reverse=True)

    def match(self, tokens: list[str], i: int) -> str | None:
        for n in self.lengths:
            if i + n <= len(tokens) and tuple(tokens[i : i + n]) in self.by_len[n]:
                return " ".join(tokens[i : i + n])
        return None


@dataclass
class _NP:
    det_count: int | None
    plural_det: bool
    adjectives: list[tuple[str, str]]
    noun: str
    definite: bool
    bad: bool  # contains words we do not understand


class _Parser:
    def __init__(self, lex: Lexicon):
        self.lex = lex
        self.adjectives: dict[str, str] = {}
        for detail, words in (("size", lex.sizes), ("shape", lex.shapes), ("texture", lex.textures),
                              ("state", lex.states), ("color", lex.colours)):  # fmt: skip
            for w in words:
                self.adjectives[w] = detail
        self.spatial = _Matcher(lex.spatial)
        self.actions = _Matcher(lex.actions)
        self.fillers = _Matcher(lex.fillers)
        self.negations = _Matcher(lex.negations)
        self.plural_dets = _Matcher(lex.plural_dets)
        self.number_phrases = _Matcher(lex.number_phrases)
        self.text_links = _Matcher(_TEXT_LINKS)
        self.places = set(lex.places)

    # ---- phrase-level helpers -------------------------------------------------------------------
    def _strip_globals(self, text: str, graph: SceneGraph) -> str:
        lex = self.lex
        media = "|".join(sorted((re.escape(m) for m in lex.media_styles + lex.neutral_media), key=len, reverse=True))
        m = re.match(rf"^(?:an?\s+)?(?:[\w-]+\s+)??({media})\s+of\s+", text)
        if m:
            if m.group(1) in lex.media_styles:
                graph.globals.append(("style", m.group(1)))
            text = text[m.end() :]
        m = (re.search(r"(?:,\s*|\s)in the style of\s+(.+)$", text)
             or re.search(r"(?:,\s*|\s)in ([\w\s'-]+?) style$", text))
        if m:
            graph.globals.append(("style", m.group(1).strip()))
            text = text[: m.start()]
        m = re.search(rf"(?:,\s*|\s)(?:as an?|in)\s+({media})$", text)
        if m and m.group(1) in lex.media_styles:
            graph.globals.append(("style", m.group(1)))
            text = text[: m.start()]
        for table, kind in ((lex.viewpoints, "viewpoint"), (lex.environment_phrases, "environment")):
            for phrase in sorted(table, key=len, reverse=True):
                pat = rf"(^|[\s,]){re.escape(phrase)}(?=$|[\s,])"
                if re.search(pat, text):
                    graph.globals.append((kind, table[phrase]))
                    text = re.sub(pat, " ", text)
        return text

    def _parse_np(self, toks: list[str]) -> _NP:
        i, count, plural_det, definite = 0, None, False, False
        if toks and toks[0] in ("the", "this", "that", "these", "those"):
            definite, i = True, 1
        m = self.number_phrases.match(toks, i)
        if m:
            count, i = self.lex.number_phrases[m], i + len(m.split())
        elif (m := self.plural_dets.match(toks, i)) is not None:
            plural_det, i = True, i + len(m.split())
        elif i < len(toks) and toks[i] in ("a", "an"):
            count, i = 1, i + 1
        elif i < len(toks) and (toks[i] in NUMBER_WORDS or toks[i].isdigit()):
            count = NUMBER_WORDS.get(toks[i]) or int(toks[i])
            i += 1
        adjectives: list[tuple[str, str]] = []
        while i < len(toks) - 1:
            t = toks[i]
            shade = t in ("light", "dark", "bright", "pale", "deep")
            if shade and toks[i + 1] in self.lex.colours and i + 2 < len(toks):
                adjectives.append(("color", f"{t} {toks[i + 1]}"))
                i += 2
            elif t in self.adjectives:
                adjectives.append((self.adjectives[t], t))
                i += 1
            elif t.endswith("-colored") or t.endswith("-coloured"):
                adjectives.append(("color", t.rsplit("-", 1)[0]))
                i += 1
            else:
                break
        noun_toks = toks[i:]
        if not noun_toks and adjectives:  # "an orange": the last adjective was the noun
            noun_toks = [adjectives.pop()[1]]
        bad = not noun_toks or len(noun_toks) > _MAX_NOUN_WORDS or any(t in _STOPWORDS for t in noun_toks)
        bad = bad or any(t in NUMBER_WORDS or t.isdigit() for t in noun_toks)
        return _NP(count, plural_det, adjectives, " ".join(noun_toks), definite, bad)

    def _adjectives_only(self, toks: list[str]) -> list[tuple[str, str]] | None:
        out = []
        for t in toks:
            if t not in self.adjectives:
                return None
            out.append((self.adjectives[t], t))
        return out or None

    def _add_entity(self, np_: _NP, graph: SceneGraph) -> int:
        lex = self.lex
        singular = singularize_noun(np_.noun, lex)
        plural = singular != np_.noun or np_.plural_det or (np_.det_count or 1) > 1
        if np_.definite:  # "the cat" refers back to an earlier cat when there is one
            for idx, e in enumerate(graph.entities):
                if e.noun == singular:
                    e.attributes.extend(a for a in np_.adjectives if a not in e.attributes)
                    return idx
        count = np_.det_count if np_.det_count is not None else (None if plural else 1)
        graph.entities.append(Entity(singular, np_.noun, count, plural, list(np_.adjectives)))
        return len(graph.entities) - 1

    # ---- sentence level -------------------------------------------------------------------------
    def parse(self, prompt: str) -> SceneGraph:
        graph = SceneGraph()
        texts: list[str] = []

        def stash(m: re.Match) -> str:
            texts.append(next(g for g in m.groups() if g is not None))
            return f" __text{len(texts) - 1}__ "

        text = _QUOTE_RE.sub(stash, prompt.strip())
        text = text.lower().replace("’", "'")
        for pattern, replacement in self.lex.rewrites:
            text = re.sub(pattern, replacement, text)
        text = re.sub(r"[.!?;:]+(\s|$)", r" \1", text).strip()
        text = self._strip_globals(text, graph)
        tokens = [t for t in re.sub(r",", " , ", text).split() if t]
        self._parse_tokens(tokens, texts, graph)
        return graph

    def _parse_tokens(self, tokens: list[str], texts: list[str], graph: SceneGraph) -> None:
        # Segment into a flat list of (kind, value) items, noun phrases collected as token runs.
        items: list[tuple[str, object]] = []
        run: list[str] = []

        def flush() -> None:
            if run:
                items.append(("np", list(run)))
                run.clear()

        i = 0
        while i < len(tokens):
            t = tokens[i]
            if t.startswith("__text") and t.endswith("__"):
                flush()
                items.append(("text", texts[int(t[6:-2])]))
                i += 1
                continue
            if t in (",", "and", "plus", "while", "&"):
                flush()
                items.append(("and", t))
                i += 1
                continue
            if t == "with" and not self.negations.match(tokens, i):
                link = self.text_links.match(tokens, i)
                flush()
                items.append(("text_link", link) if link else ("with", t))
                i += len(link.split()) if link else 1
                continue
            for kind, matcher in (("text_link", self.text_links), ("neg", self.negations),
                                  ("rel", self.spatial), ("act", self.actions)):  # fmt: skip
                m = matcher.match(tokens, i)
                # "a" inside a noun phrase is not the start of a relation ("in a" ok; "near" ok)
                if m and not (kind == "neg" and m == "no" and run and run[-1] in ("a", "an")):
                    flush()
                    items.append((kind, m))
                    i += len(m.split())
                    break
            else:
                m = self.fillers.match(tokens, i)
                if m:
                    nxt = i + len(m.split())
                    flush()
                    i = nxt
                    if self.spatial.match(tokens, nxt) or self.actions.match(tokens, nxt):
                        continue  # "is sitting on", "is holding": the relation carries the meaning
                    if nxt >= len(tokens) or tokens[nxt] in (",", "and"):
                        items.append(("act", m))  # "a cat sitting"
                    else:
                        items.append(("cop", m))  # "the apple is red"
                    continue
                run.append(t)
                i += 1
        flush()
        self._interpret(items, graph)

    def _interpret(self, items: list[tuple[str, object]], graph: SceneGraph) -> None:
        last: int | None = None  # the most recent entity, subject of the next relation
        pending: tuple[str, str] | None = None  # a relation/action waiting for its object
        negate = False
        for kind, value in items:
            if kind == "np":
                toks = value  # type: ignore[assignment]
                if pending and pending[0] == "cop":
                    adjs = self._adjectives_only(toks)
                    if adjs is not None and last is not None:  # "the apple is red"
                        have = graph.entities[last].attributes
                        have.extend(a for a in adjs if a not in have)
                    else:
                        graph.unparsed.append(" ".join([pending[1], *toks]))
                    pending = None
                    continue
                np_ = self._parse_np(toks)
                if np_.bad:
                    graph.unparsed.append(" ".join(toks))
                    pending, negate = None, False
                    continue
                if negate:
                    graph.negated.append(Entity(singularize_noun(np_.noun, self.lex), np_.noun))
                    negate = False
                    continue
                if pending and pending[0] == "rel" and np_.noun in self.places:
                    graph.globals.append(("environment", f"{pending[1]} a {singularize_noun(np_.noun, self.lex)}"))
                    pending = None
                    continue
                if pending is None and last is None and np_.noun in self.places and np_.det_count == 1:
                    pass  # a place as the main subject ("a kitchen with ...") is still an entity
                idx = self._add_entity(np_, graph)
                if pending and last is not None:
                    k, pred = pending
                    detail = {"rel": "spatial", "act": "action", "with": "part"}[k]
                    graph.relations.append(Relation(last, idx, pred, detail))
                    if k == "with":  # "a cat with a hat": the cat stays the subject
                        pending = None
                        continue
                pending = None
                last = idx
            elif kind == "rel":
                pending = ("rel", self.lex.spatial[value])  # type: ignore[index]
            elif kind == "act":
                pending = ("act", self.lex.actions.get(value, value))  # type: ignore[arg-type]
            elif kind == "with":
                pending = ("with", "with")
            elif kind == "cop":
                pending = ("cop", str(value))
            elif kind == "neg":
                negate = True
            elif kind == "text":
                graph.texts.append((str(value), last))
            elif kind == "text_link":
                pass  # the quoted text that follows attaches to `last`
            elif kind == "and":
                self._close_pending(pending, last, graph)
                pending = None
        self._close_pending(pending, last, graph)

    def _close_pending(self, pending: tuple[str, str] | None, last: int | None, graph: SceneGraph) -> None:
        if pending is None:
            return
        if pending[0] == "act" and last is not None:
            graph.actions.append((last, pending[1]))
        elif pending[0] not in ("with", "cop"):
            graph.unparsed.append(pending[1])


def parse_prompt(prompt: str, lex: Lexicon) -> SceneGraph:
    return _Parser(lex).parse(prompt)
