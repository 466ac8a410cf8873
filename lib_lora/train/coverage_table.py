"""The one data table of the dataset coverage report: which caption words say which view, expression,
lighting, background or outfit.

Each dimension lists its categories in priority order (the first category whose words occur in a caption
wins, so ``profile`` beats ``looking at viewer``); each category lists booru tags (``from side``) and
plain-language phrases (``side view``, ``in profile``). Words match whole (no letter or digit right before
or after), case-insensitively, with ``_`` read as a space, and not right after ``no`` / ``not`` /
``without``; a word written ``=dark`` matches only a whole comma-separated tag (so ``dark hair`` is no
low light). The targets follow the guidance character-LoRA trainers publish: every angle, expression and
lighting present, about 30% simple backgrounds and 70% varied scenes, 3–4 outfits.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    id: str
    label: str  # as the advice names it: "no profile shots", "no sad expressions"
    words: tuple[str, ...]
    required: bool = True  # the advice asks for it when missing


@dataclass(frozen=True)
class Dimension:
    id: str
    label: str
    categories: tuple[Category, ...]
    add_hint: str  # what the user adds to a caption so the report sees it


ANGLES = Dimension(
    "angles",
    "Angles",
    (
        Category("from-behind", "shots from behind", ("from behind", "back view", "facing away", "seen from behind",
                                                      "from the back"), required=False),
        Category("profile", "profile shots", ("profile", "from side", "side view", "in profile", "side profile",
                                              "seen from the side", "from the side")),
        Category("from-above", "shots from above", ("from above", "high angle", "top-down", "top down",
                                                    "bird's-eye view", "birds eye view", "overhead shot",
                                                    "looking up at the camera", "looking up at viewer")),
        Category("from-below", "low-angle shots", ("from below", "low angle", "worm's-eye view", "worms eye view",
                                                   "looking down at viewer", "looking down at the camera")),
        Category("three-quarter", "45° (three-quarter) views", ("three-quarter view", "three quarter view",
                                                                "3/4 view", "45 degree", "45-degree", "45°",
                                                                "half-turned", "turned slightly", "looking to the side",
                                                                "looking away", "head tilt", "looking back")),
        Category("front", "front views", ("looking at viewer", "front view", "from front", "facing viewer",
                                          "facing the camera", "facing the viewer", "looking at the camera",
                                          "straight-on", "straight on", "frontal")),
    ),
    "tag the view (`from side`, `from above`, `from below`, `looking at viewer`)",
)

EXPRESSIONS = Dimension(
    "expressions",
    "Expressions",
    (
        Category("sad", "sad expressions", ("sad", "crying", "tears", "teary eyes", "sorrowful", "upset", "unhappy",
                                             "streaming tears", "melancholy", "frowning sadly")),
        Category("surprised", "surprised expressions", ("surprised", "shocked", "astonished", "wide-eyed",
                                                         "amazed", ":o", "startled")),
        Category("serious", "serious or angry expressions", ("serious", "angry", "frown", "frowning", "stern",
                                                              "determined", "glaring", "annoyed", "furious",
                                                              "v-shaped eyebrows", "scowl", "scowling")),
        Category("smile", "smiles", ("smile", "smiling", "grin", "grinning", "laughing", "laugh", ":d", "happy",
                                      "smug", "cheerful")),
        Category("neutral", "neutral expressions", ("expressionless", "neutral expression", "blank expression",
                                                     "neutral face", "calm expression", "closed mouth",
                                                     "straight face", "no expression", "emotionless")),
    ),
    "tag the expression (`smile`, `expressionless`, `sad`, `surprised`, `serious`)",
)

LIGHTING = Dimension(
    "lighting",
    "Lighting",
    (
        Category("backlit", "backlit images", ("backlighting", "backlit", "backlight", "rim light", "rim lighting",
                                                "silhouette", "against the light", "sun behind", "contre-jour")),
        Category("low-light", "low-light images", ("=dark", "night", "at night", "darkness", "dim light", "dimly lit",
                                                    "low light", "low-light", "moonlight", "candlelight",
                                                    "night sky", "nighttime")),
        Category("side-light", "dramatic side light", ("dramatic lighting", "side lighting", "side light",
                                                       "chiaroscuro", "light from the side", "hard shadows",
                                                       "harsh shadows", "split lighting", "rembrandt lighting",
                                                       "cinematic lighting", "=shadow")),
        Category("warm-indoor", "warm indoor light", ("warm lighting", "warm light", "lamp", "lamplight",
                                                      "indoor lighting", "soft indoor light", "fireplace",
                                                      "tungsten", "cozy", "cosy", "warm indoor")),
        Category("natural", "natural daylight", ("sunlight", "daylight", "=day", "daytime", "natural light",
                                                 "sunny", "blue sky", "outdoor light", "soft daylight",
                                                 "overcast", "golden hour", "sunset", "sunrise")),
    ),
    "tag the light (`sunlight`, `backlighting`, `night`, `dramatic lighting`)",
)

#: background colours that make "<colour> background" a simple one
_COLOURS = ("white", "grey", "gray", "black", "blue", "red", "pink", "green", "yellow", "purple", "orange",
            "brown", "beige", "light blue", "dark", "light", "gradient", "two-tone", "plain", "solid", "simple",
            "transparent", "neutral", "studio")

BACKGROUNDS = Dimension(
    "backgrounds",
    "Backgrounds",
    (
        Category("simple", "simple or solid backgrounds",
                 tuple(f"{c} background" for c in _COLOURS)
                 + ("studio backdrop", "white backdrop", "plain backdrop", "isolated on white", "blank background")),
        Category("varied", "varied scenes", ("outdoors", "indoors", "detailed background", "scenery", "city",
                                             "street", "forest", "beach", "park", "room", "bedroom", "classroom",
                                             "kitchen", "cafe", "café", "office", "library", "garden", "grass field", "flower field",
                                             "mountain", "sky", "ocean", "river", "lake", "snow", "rain", "train",
                                             "shop", "restaurant", "stage", "rooftop", "building",
                                             "house", "window", "tree", "trees", "flowers", "meadow", "desert",
                                             "castle", "alley", "bridge", "landscape", "living room", "street at night")),
    ),
    "tag the background (`simple background`, `white background`, `outdoors`, `indoors`)",
)

#: garment words; an image's outfit is the set of those its caption names (with a colour word before it)
GARMENTS: tuple[str, ...] = (
    "school uniform", "serafuku", "sailor uniform", "military uniform", "police uniform", "maid outfit",
    "maid", "nurse outfit", "uniform", "wedding dress", "sundress", "dress", "gown", "kimono", "yukata",
    "hanfu", "cheongsam", "china dress", "qipao", "swimsuit", "bikini", "one-piece swimsuit", "armor",
    "armour", "suit", "tuxedo", "business suit", "tracksuit", "jumpsuit", "overalls", "bodysuit",
    "leotard", "jacket", "leather jacket", "denim jacket", "coat", "trench coat", "winter coat",
    "raincoat", "cape", "cloak", "robe", "hoodie", "sweater", "cardigan", "vest", "blazer", "shirt",
    "t-shirt", "tank top", "crop top", "blouse", "turtleneck", "skirt", "pleated skirt", "miniskirt",
    "jeans", "pants", "trousers", "shorts", "leggings", "pajamas", "pyjamas", "apron", "sportswear",
    "gym uniform", "lab coat", "overcoat", "parka", "poncho", "dungarees",
)
OUTFIT_COLOURS: tuple[str, ...] = (
    "white", "black", "grey", "gray", "blue", "red", "pink", "green", "yellow", "purple", "orange", "brown",
    "beige", "navy", "dark", "light", "striped", "plaid", "denim", "leather",
)

DIMENSIONS: tuple[Dimension, ...] = (ANGLES, EXPRESSIONS, LIGHTING, BACKGROUNDS)
NEGATIONS: tuple[str, ...] = ("no", "not", "without", "non")

#: image-count guidance (distinct images)
COUNT_MINIMUM = (15, 20)
COUNT_RECOMMENDED = (30, 50)
COUNT_IDEAL = (80, 100)
#: share of simple backgrounds the guidance asks for; advice when outside SIMPLE_SHARE_RANGE
SIMPLE_SHARE_TARGET = 0.30
SIMPLE_SHARE_RANGE = (0.15, 0.50)
#: distinct outfits the guidance asks for
OUTFITS_TARGET = (3, 4)
#: a category holding more than this share of the images with a known value dominates
DOMINANT_SHARE = 0.8

__all__ = [
    "ANGLES",
    "BACKGROUNDS",
    "COUNT_IDEAL",
    "COUNT_MINIMUM",
    "COUNT_RECOMMENDED",
    "DIMENSIONS",
    "DOMINANT_SHARE",
    "EXPRESSIONS",
    "GARMENTS",
    "LIGHTING",
    "NEGATIONS",
    "OUTFITS_TARGET",
    "OUTFIT_COLOURS",
    "SIMPLE_SHARE_RANGE",
    "SIMPLE_SHARE_TARGET",
    "Category",
    "Dimension",
]
