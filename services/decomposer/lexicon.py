"""The vocabulary of the ``rules`` decomposer, as data.

The defaults cover GenEval / T2I-CompBench style prompts. A world (ShapesWorld, a product catalogue)
extends them without any import: point ``DECOMPOSER_RULES_LEXICON`` at a JSON file whose keys are the
field names below; lists are appended, dicts are merged. Nothing in this file is prompt-specific.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20,
}  # fmt: skip

_COLOURS = [
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray", "grey",
    "silver", "gold", "golden", "beige", "cyan", "magenta", "violet", "turquoise", "teal", "navy", "maroon",
    "tan", "cream", "ivory", "olive", "lime", "indigo", "crimson", "scarlet", "amber", "bronze", "copper",
    "multicolored", "colorful", "colourful",
]  # fmt: skip
_SIZES = ["big", "small", "large", "tiny", "huge", "little", "giant", "tall", "short", "long", "wide", "narrow",
          "thin", "thick", "miniature", "enormous", "massive", "medium"]  # fmt: skip
_SHAPES = ["round", "square", "rectangular", "triangular", "circular", "oval", "spherical", "cubic", "cylindrical",
           "hexagonal", "pentagonal", "pyramidal", "octagonal", "conical", "pointed", "curved", "straight", "flat",
           "star-shaped", "heart-shaped"]  # fmt: skip
_TEXTURES = ["wooden", "metallic", "metal", "plastic", "glass", "leather", "fluffy", "furry", "smooth", "rough",
             "shiny", "glossy", "matte", "fabric", "rubber", "stone", "ceramic", "paper", "woolen", "velvet",
             "silk", "cotton", "concrete", "marble", "brick", "steel", "iron", "golden", "crystal", "fuzzy",
             "soft", "hard", "transparent", "wicker", "denim", "knitted"]  # fmt: skip
_STATES = ["old", "new", "broken", "open", "closed", "empty", "full", "wet", "dry", "clean", "dirty", "sliced",
           "cooked", "raw", "ripe", "frozen", "melting", "burning", "cracked", "folded", "young", "happy", "sad",
           "angry", "sleeping", "smiling", "cute", "beautiful", "modern", "ancient", "vintage", "fresh", "dark",
           "bright", "striped", "spotted", "checkered", "polka-dotted"]  # fmt: skip

# Phrase -> canonical spatial predicate. Longest phrases are matched first.
_SPATIAL = {
    "to the left of": "left of", "on the left of": "left of", "on the left side of": "left of",
    "at the left of": "left of", "left of": "left of",
    "to the right of": "right of", "on the right of": "right of", "on the right side of": "right of",
    "at the right of": "right of", "right of": "right of",
    "above": "above", "over": "above", "below": "below", "under": "below", "beneath": "below",
    "underneath": "below", "on top of": "on", "on": "on", "upon": "on", "atop": "on",
    "in front of": "in front of", "behind": "behind", "in back of": "behind",
    "next to": "next to", "beside": "next to", "near": "next to", "close to": "next to", "by": "next to",
    "inside": "in", "in": "in", "within": "in", "inside of": "in",
    "on the top of": "on", "at the top of": "above", "on the bottom of": "below", "at the bottom of": "below",
    "on the side of": "next to", "on side of": "next to", "at the side of": "next to", "alongside": "next to",
}  # fmt: skip

# Transitive/intransitive actions: surface form -> progressive form used in questions.
_ACTIONS = {
    "holding": "holding", "holds": "holding", "riding": "riding", "rides": "riding", "eating": "eating",
    "eats": "eating", "drinking": "drinking", "drinks": "drinking", "playing": "playing", "plays": "playing",
    "reading": "reading", "reads": "reading", "wearing": "wearing", "wears": "wearing", "carrying": "carrying",
    "carries": "carrying", "chasing": "chasing", "chases": "chasing", "throwing": "throwing", "throws": "throwing",
    "catching": "catching", "catches": "catching", "kicking": "kicking", "kicks": "kicking", "hugging": "hugging",
    "hugs": "hugging", "pushing": "pushing", "pushes": "pushing", "pulling": "pulling", "pulls": "pulling",
    "walking": "walking", "walks": "walking", "running": "running", "runs": "running", "flying": "flying",
    "flies": "flying", "jumping": "jumping", "jumps": "jumping", "swimming": "swimming", "swims": "swimming",
    "watching": "watching", "watches": "watching", "feeding": "feeding", "feeds": "feeding",
    "petting": "petting", "pets": "petting", "cutting": "cutting", "cuts": "cutting", "looking at": "looking at",
    "looks at": "looking at", "touching": "touching", "touches": "touching", "using": "using", "uses": "using",
    "driving": "driving", "drives": "driving", "sleeping": "sleeping", "sleeps": "sleeping",
    "dancing": "dancing", "dances": "dancing", "singing": "singing", "sings": "singing",
    "smiling": "smiling", "smiles": "smiling", "cooking": "cooking", "cooks": "cooking",
    "painting": "painting", "paints": "painting", "writing": "writing", "writes": "writing",
    "climbing": "climbing", "climbs": "climbing", "facing": "facing", "faces": "facing",
    "biting": "biting", "bites": "biting", "licking": "licking", "licks": "licking",
    "sniffing": "sniffing", "sniffs": "sniffing", "barking at": "barking at", "barks at": "barking at",
}  # fmt: skip

# Words that only link a subject to a relation ("the cat is sitting on the mat"); dropped before a relation.
_FILLERS = ["is", "are", "was", "were", "sits", "sitting", "stands", "standing", "lies", "lying", "rests",
            "resting", "placed", "located", "positioned", "parked", "perched", "hangs", "hanging", "floating",
            "floats", "kept", "stacked", "situated", "seated", "lays", "laying", "that is", "which is",
            "that are", "which are", "who is", "leaning", "leans", "set", "put", "hung", "mounted", "displayed",
            "arranged",
            "stored", "attached", "placed neatly", "sat", "stood", "lay"]  # fmt: skip

# Determiners that mean a plural of unknown size, and phrases that mean an exact number.
_PLURAL_DETS = ["some", "several", "many", "multiple", "a few", "few", "a group of", "a bunch of", "a lot of",
                "lots of", "a pile of", "a stack of", "a set of", "set of", "a crowd of", "a herd of", "a flock of",
                "various"]  # fmt: skip
_NUMBER_PHRASES = {"a pair of": 2, "a couple of": 2, "a single": 1, "one single": 1, "a dozen": 12}

_NEGATIONS = ["without", "with no", "no", "not", "not a", "not any", "never", "free of"]

_MEDIA_STYLES = [
    "painting", "oil painting", "watercolor painting", "watercolor", "drawing", "pencil drawing", "sketch",
    "illustration", "cartoon", "anime", "comic", "3d render", "render", "digital art", "pixel art",
    "oil on canvas", "charcoal drawing", "ink drawing", "sculpture", "mosaic", "poster", "vector art",
]  # fmt: skip
_NEUTRAL_MEDIA = ["photo", "photograph", "picture", "image", "shot", "snapshot", "photo realistic image",
                  "realistic photo", "high quality photo", "close-up photo", "photorealistic image"]  # fmt: skip
_VIEWPOINTS = {
    "from above": "from above", "top view": "from above", "top-down view": "from above", "aerial view": "from above",
    "bird's eye view": "from above", "birds eye view": "from above", "from below": "from below",
    "low angle": "from below", "side view": "side view", "from the side": "side view", "close-up": "close-up",
    "close up": "close-up", "closeup": "close-up", "wide shot": "wide shot", "front view": "front view",
    "from the front": "front view", "from behind": "from behind", "back view": "from behind",
}  # fmt: skip
_ENVIRONMENT_PHRASES = {
    "at night": "at night", "at sunset": "at sunset", "at sunrise": "at sunrise", "at dawn": "at dawn",
    "at dusk": "at dusk", "in the morning": "in the morning", "in the evening": "in the evening",
    "during the day": "during the day", "in winter": "in winter", "in summer": "in summer",
    "in the rain": "in the rain", "in the snow": "in the snow", "on a sunny day": "on a sunny day",
    "on a rainy day": "on a rainy day", "underwater": "underwater", "in space": "in space",
}  # fmt: skip
_PLACES = ["room", "kitchen", "bedroom", "bathroom", "living room", "office", "park", "beach", "forest", "street",
           "city", "field", "desert", "ocean", "sea", "lake", "river", "mountain", "mountains", "garden", "yard",
           "backyard", "farm", "classroom", "library", "restaurant", "cafe", "market", "store", "shop", "road",
           "sky", "space", "snow", "jungle", "meadow", "countryside", "village", "town", "house", "studio",
           "stadium", "museum", "hospital", "airport", "station", "harbor", "island", "cave", "valley", "hill",
           "parking lot", "playground", "courtyard", "alley", "subway", "highway", "grassland", "savanna"]  # fmt: skip

# Nouns of living things: their presence adds an anatomy quality question.
_ANIMATE = ["person", "man", "woman", "boy", "girl", "child", "kid", "baby", "people", "player", "chef", "doctor",
            "teacher", "student", "soldier", "king", "queen", "astronaut", "robot", "cat", "dog", "horse", "bird",
            "cow", "sheep", "elephant", "bear", "zebra", "giraffe", "lion", "tiger", "monkey", "rabbit", "mouse",
            "fish", "duck", "chicken", "pig", "goat", "deer", "fox", "wolf", "owl", "penguin", "panda", "frog",
            "snake", "turtle", "squirrel", "kitten", "puppy", "teddy bear"]  # fmt: skip

_IRREGULAR_PLURALS = {
    "people": "person", "men": "man", "women": "woman", "children": "child", "mice": "mouse", "geese": "goose",
    "teeth": "tooth", "feet": "foot", "knives": "knife", "wolves": "wolf", "leaves": "leaf", "shelves": "shelf",
    "loaves": "loaf", "halves": "half", "scarves": "scarf", "calves": "calf", "lives": "life", "wives": "wife",
    "buses": "bus", "oxen": "ox", "dice": "die", "potatoes": "potato", "tomatoes": "tomato", "heroes": "hero",
    "volcanoes": "volcano", "mangoes": "mango", "echoes": "echo", "cacti": "cactus", "fungi": "fungus",
    "octopi": "octopus", "cookies": "cookie", "movies": "movie", "brownies": "brownie", "pies": "pie",
    "ties": "tie", "zombies": "zombie", "sheep": "sheep", "fish": "fish", "deer": "deer", "series": "series",
    "species": "species", "glasses": "glass", "bushes": "bush", "boxes": "box",
}  # fmt: skip
_UNCOUNTABLE_S = ["bus", "glass", "grass", "dress", "class", "gas", "lens", "cactus", "octopus", "hummus",
                  "canvas", "news", "jeans", "pants", "scissors", "shorts", "glasses", "skis", "chess", "mattress",
                  "walrus", "bonus", "circus", "atlas", "iris", "tennis", "virus", "corpus", "status",
                  "asparagus", "hippopotamus", "platypus", "compass", "cross", "boss", "moss", "brass", "axis", "basis",
                  "oasis", "chassis", "trellis", "crisis", "thesis", "pelvis", "its", "this", "yes", "has", "was",
                  "is", "us", "gps"]  # fmt: skip


@dataclass
class Lexicon:
    colours: list[str] = field(default_factory=lambda: list(_COLOURS))
    sizes: list[str] = field(default_factory=lambda: list(_SIZES))
    shapes: list[str] = field(default_factory=lambda: list(_SHAPES))
    textures: list[str] = field(default_factory=lambda: list(_TEXTURES))
    states: list[str] = field(default_factory=lambda: list(_STATES))
    spatial: dict[str, str] = field(default_factory=lambda: dict(_SPATIAL))
    actions: dict[str, str] = field(default_factory=lambda: dict(_ACTIONS))
    fillers: list[str] = field(default_factory=lambda: list(_FILLERS))
    plural_dets: list[str] = field(default_factory=lambda: list(_PLURAL_DETS))
    number_phrases: dict[str, int] = field(default_factory=lambda: dict(_NUMBER_PHRASES))
    negations: list[str] = field(default_factory=lambda: list(_NEGATIONS))
    media_styles: list[str] = field(default_factory=lambda: list(_MEDIA_STYLES))
    neutral_media: list[str] = field(default_factory=lambda: list(_NEUTRAL_MEDIA))
    viewpoints: dict[str, str] = field(default_factory=lambda: dict(_VIEWPOINTS))
    environment_phrases: dict[str, str] = field(default_factory=lambda: dict(_ENVIRONMENT_PHRASES))
    places: list[str] = field(default_factory=lambda: list(_PLACES))
    animate: list[str] = field(default_factory=lambda: list(_ANIMATE))
    irregular_plurals: dict[str, str] = field(default_factory=lambda: dict(_IRREGULAR_PLURALS))
    uncountable_s: list[str] = field(default_factory=lambda: list(_UNCOUNTABLE_S))
    # Implicit-intent rewrites applied before parsing ("as many stars as a triangle has corners" ->
    # "three stars"): a list of [regex, replacement] pairs; a world supplies its own knowledge base here.
    rewrites: list[list[str]] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path | None) -> Lexicon:
        """The defaults, extended by the JSON file at ``path`` (lists appended, dicts merged)."""
        lex = cls()
        if not path:
            return lex
        extra = json.loads(Path(path).read_text())
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(extra) - names)
        if unknown:
            raise ValueError(f"{path}: unknown lexicon keys {unknown}; known keys are {sorted(names)}")
        for key, value in extra.items():
            current = getattr(lex, key)
            if isinstance(current, dict):
                current.update(value)
            else:
                current.extend(value)
        return lex

    def fingerprint(self) -> str:
        """A short hash of the whole vocabulary; part of the cache key, so edits invalidate old answers."""
        import hashlib

        blob = json.dumps({f.name: getattr(self, f.name) for f in fields(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]
