"""The course world: a small, seeded universe of invented facts that a laptop model can learn.

Introduced in chapter 1 (Pretraining data); every later chapter draws on it.

A model of a few million parameters trained for minutes on two CPU cores cannot learn the
internet, but it can learn a small world, and the lecture's phenomena appear in it as they do at
scale. The world is:

- **entities** (people, cities, animals, inventions) with **facts** (a birth year, a home city,
  a colour, an inventor, ...). Entities have a popularity rank, and documents pick the entity
  they talk about with a Zipf-like law (weight ``1 / rank**zipf_a``): a *head* of entities that
  appear in hundreds of documents (the model will know them) and a *long tail* seen once or
  never (the model will guess: hallucination, chapter 7);
- **documents** of several kinds, written from the facts: encyclopedia entries, short stories,
  forum Q&A threads, lists and tables, news-like notes, and arithmetic and counting problems with
  worked, step-by-step solutions. ``course_lib.crawl`` renders them as web pages; chapter 1 cleans
  the pages back into the pretraining corpus;
- data that later chapters use directly, not through the crawl: chat conversations about the
  world and about the assistant itself (``chat_conversations``, chapter 6), fact questions with
  known answers (``fact_questions``, chapter 7), verifiable problems (``verifiable_problems``,
  chapter 8) and preference pairs scored by a hidden rule (``preference_pairs``, chapter 9).

Everything is a pure function of a seed: ``make_world(seed)`` twice gives the same world, and the
same documents, byte for byte (no ``hash()``, no clock, no global random state).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, replace

# --------------------------------------------------------------------------------------------
# Vocabulary the world is built from
# --------------------------------------------------------------------------------------------

_ONSETS = ["b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "r", "s",
           "sh", "st", "t", "th", "tr", "v", "w", "z", "c", "j", "pl", "sk"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "y"]
_CODAS = ["", "", "", "n", "r", "l", "s", "th", "m", "k", "nd", "st", "x"]

OCCUPATIONS = ["baker", "painter", "sailor", "clockmaker", "teacher", "weaver", "doctor",
               "farmer", "poet", "astronomer", "carpenter", "musician"]
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "silver", "black"]
COUNTRIES = ["Velmora", "Ostravia", "Kandor", "Sulvane", "Brisket Isles", "Norwend",
             "Talassa", "Quorin", "Eskaria", "Mirevale"]
RIVERS = ["Ashwater", "Greyrun", "Silverlace", "Mallow", "Tessel", "Oxbend", "Flintbrook",
          "Duskriver"]
KNOWN_FOR = ["cheese", "bridges", "lanterns", "music festivals", "glassware", "clock towers",
             "gardens", "boat races", "spiced bread", "libraries"]
ANIMAL_CLASSES = ["bird", "fish", "beetle", "lizard", "frog", "moth", "snail", "bat"]
FOODS = ["seeds", "moss", "berries", "small fish", "leaves", "insects", "mushrooms", "nectar"]
HABITATS = ["forests", "caves", "marshes", "mountains", "deserts", "rivers", "meadows",
            "coastal cliffs"]
DEVICES = ["loom", "lamp", "engine", "compass", "clock", "kettle", "telescope", "pump", "press",
           "bell"]
PURPOSES = ["measuring rain", "weaving cloth", "lighting streets", "finding north",
            "keeping time", "boiling water", "watching stars", "lifting water", "printing books",
            "calling ships"]

KINDS = ("person", "city", "animal", "invention")
DOCUMENT_KINDS = ("encyclopedia", "story", "forum", "list", "table", "news", "arithmetic",
                  "counting", "reading", "copying")

# The assistant's identity (chapter 6: "knowledge of self" is whatever the data says)
ASSISTANT_NAME = "Pebble"
ASSISTANT_MAKER = "the Deep Dive course"


# --------------------------------------------------------------------------------------------
# Entities and facts
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    """One fact: ``subject``'s ``relation`` is ``value``; ``prompt + " " + value`` is the
    canonical sentence (``prompt`` ends right before the answer, for fact completion)."""

    subject: str
    relation: str
    value: str
    prompt: str

    @property
    def sentence(self) -> str:
        return f"{self.prompt} {self.value}."


@dataclass(frozen=True)
class Entity:
    """An invented thing with facts. ``rank`` 1 is the most popular entity of the world."""

    name: str
    kind: str
    rank: int
    facts: dict = field(default_factory=dict)  # relation -> value

    def fact(self, relation: str) -> Fact:
        return Fact(self.name, relation, self.facts[relation],
                    _FACT_PROMPTS[self.kind][relation].format(name=self.name))

    def all_facts(self) -> list[Fact]:
        return [self.fact(r) for r in self.facts]


# canonical sentence of each relation, up to (not including) the value
_FACT_PROMPTS = {
    "person": {"born": "{name} was born in", "city": "{name} lives in",
               "job": "{name} works as a", "colour": "The favourite colour of {name} is"},
    "city": {"country": "{name} is a city in", "river": "{name} lies on the river",
             "known_for": "{name} is famous for its"},
    "animal": {"class": "The {name} is a kind of", "food": "The {name} eats",
               "habitat": "The {name} lives in"},
    "invention": {"inventor": "The {name} was invented by", "year": "The {name} was invented in",
                  "purpose": "The {name} is used for"},
}


@dataclass
class World:
    """All entities of one seed, most popular first, with the Zipf weights documents use."""

    seed: int
    entities: list[Entity]
    zipf_a: float

    def by_name(self, name: str) -> Entity:
        for e in self.entities:
            if e.name == name:
                return e
        raise KeyError(f"no entity named {name!r} in this world (seed {self.seed})")

    def of_kind(self, kind: str) -> list[Entity]:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return [e for e in self.entities if e.kind == kind]

    def weights(self, entities: list[Entity] | None = None) -> list[float]:
        return [1.0 / e.rank ** self.zipf_a for e in (entities or self.entities)]

    def pick(self, rng: random.Random, kind: str | None = None) -> Entity:
        """An entity drawn with the Zipf weights (optionally of one kind)."""
        pool = self.entities if kind is None else self.of_kind(kind)
        return rng.choices(pool, weights=self.weights(pool))[0]

    def facts(self) -> list[Fact]:
        return [f for e in self.entities for f in e.all_facts()]


def _word(rng: random.Random, syllables: int) -> str:
    parts = []
    for _ in range(syllables):
        parts.append(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS))
    return "".join(parts)


def _unique(rng, used, make):
    for _ in range(1000):
        name = make()
        if name not in used and len(name) >= 4:
            used.add(name)
            return name
    raise RuntimeError("could not make a new unique name; lower n_entities")


def make_world(seed: int = 0, n_entities: int = 1000, zipf_a: float = 1.0,
               kind_shares: tuple = (0.4, 0.2, 0.2, 0.2)) -> World:
    """The course world of ``seed``: ``n_entities`` entities of ``KINDS`` in ``kind_shares``,
    ranked by popularity (rank 1 first). Same arguments, same world."""
    if n_entities < 8:
        raise ValueError(f"n_entities must be at least 8 (two of each kind), got {n_entities}")
    if zipf_a <= 0:
        raise ValueError(f"zipf_a must be positive, got {zipf_a}")
    rng = random.Random(f"course-world-{seed}")
    counts = [max(2, round(n_entities * s)) for s in kind_shares]
    counts[0] += n_entities - sum(counts)
    used: set = set()
    names = {}
    names["person"] = [_unique(rng, used, lambda: f"{_word(rng, 2).title()} "
                                                  f"{_word(rng, rng.choice([1, 2])).title()}")
                       for _ in range(counts[0])]
    names["city"] = [_unique(rng, used, lambda: _word(rng, rng.choice([2, 3])).title())
                     for _ in range(counts[1])]
    names["animal"] = [_unique(rng, used, lambda: _word(rng, 2) + rng.choice(
        ["fin", "wing", "tail", "back", "horn", "claw"])) for _ in range(counts[2])]
    names["invention"] = [_unique(rng, used, lambda: f"{_word(rng, 2).title()} "
                                                     f"{rng.choice(DEVICES)}")
                          for _ in range(counts[3])]
    # popularity: a random interleaving of all kinds
    order = [(k, i) for k in KINDS for i in range(len(names[k]))]
    rng.shuffle(order)
    rank = {key: r + 1 for r, key in enumerate(order)}
    cities = names["city"]
    people = names["person"]
    entities = []
    for kind, i in order:
        name = names[kind][i]
        if kind == "person":
            facts = {"born": str(rng.randrange(1650, 1990)), "city": rng.choice(cities),
                     "job": rng.choice(OCCUPATIONS), "colour": rng.choice(COLOURS)}
        elif kind == "city":
            facts = {"country": rng.choice(COUNTRIES), "river": rng.choice(RIVERS),
                     "known_for": rng.choice(KNOWN_FOR)}
        elif kind == "animal":
            facts = {"class": rng.choice(ANIMAL_CLASSES), "food": rng.choice(FOODS),
                     "habitat": rng.choice(HABITATS)}
        else:
            device = name.split()[-1]
            purpose = PURPOSES[DEVICES.index(device)] if rng.random() < 0.7 else rng.choice(
                PURPOSES)
            facts = {"inventor": rng.choice(people), "year": str(rng.randrange(1700, 1990)),
                     "purpose": purpose}
        entities.append(Entity(name, kind, rank[(kind, i)], facts))
    entities.sort(key=lambda e: e.rank)
    return World(seed, entities, zipf_a)


# --------------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------------


@dataclass
class Document:
    """A document of the world: ``kind`` is one of ``DOCUMENT_KINDS``; ``facts`` lists every
    fact the text states (for counting how often the model saw each)."""

    kind: str
    title: str
    text: str
    facts: list[Fact] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)


def _a(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def _variant(f: Fact, rng: random.Random) -> str:
    """The fact in one of several wordings (the canonical one most often)."""
    n, v = f.subject, f.value
    other = {
        "born": [f"{n} came into the world in {v}.", f"In {v}, {n} was born."],
        "city": [f"{n} has a home in {v}.", f"{n} settled in {v} long ago."],
        "job": [f"By trade, {n} is {_a(v)}.", f"{n} earns a living as {_a(v)}."],
        "colour": [f"{n} likes the colour {v} best.", f"{n} loves anything {v}."],
        "country": [f"{n} belongs to {v}.", f"The city of {n} is part of {v}."],
        "river": [f"The river {v} runs through {n}.", f"{n} was built on the banks of the {v}."],
        "known_for": [f"People visit {n} for its {v}.", f"{n} is well known for its {v}."],
        "class": [f"The {n} is {_a(v)} found nowhere else.", f"Zoologists class the {n} as {_a(v)}."],
        "food": [f"The {n} feeds on {v}.", f"The diet of the {n} is mostly {v}."],
        "habitat": [f"The {n} makes its home in {v}.", f"You can find the {n} in {v}."],
        "inventor": [f"{v} invented the {n}.", f"The {n} is the work of {v}."],
        "year": [f"The {n} first appeared in {v}.", f"In {v} the {n} was invented."],
        "purpose": [f"People use the {n} for {v}.", f"The {n} is a tool for {v}."],
    }[f.relation]
    if f.relation == "job":
        canonical = f"{n} works as {_a(v)}."
    else:
        canonical = f.sentence
    return canonical if rng.random() < 0.6 else rng.choice(other)


def _short(e: Entity, sentence: str) -> str:
    """The sentence with the entity referred to briefly (a first name, "it", "the city"), as
    real pages do after the first mention; keeps the corpus from repeating full names."""
    if e.kind == "person":
        return sentence.replace(e.name, e.name.split()[0])
    ref = {"city": "the city", "animal": "it", "invention": "it"}[e.kind]
    for full in (f"The {e.name}", f"the {e.name}", e.name):
        if sentence.startswith(full):
            return ref[0].upper() + ref[1:] + sentence[len(full):]
        sentence = sentence.replace(full, ref if e.kind == "city" else f"this {e.kind}")
    return sentence


def _encyclopedia(world: World, e: Entity, rng: random.Random) -> Document:
    facts = e.all_facts()
    rng.shuffle(facts)
    x = e.facts
    if e.kind == "person":
        opening = f"{e.name} is {_a(x['job'])} from {x['city']}."
    elif e.kind == "city":
        opening = f"{e.name} is a city in {x['country']}."
    elif e.kind == "animal":
        opening = f"The {e.name} is {_a(x['class'])}."
    else:
        opening = f"The {e.name} is an invention used for {x['purpose']}."
    lines = [opening]
    for k, f in enumerate(facts):
        sent = f.sentence if f.relation != "job" else f"{e.name} works as {_a(f.value)}."
        lines.append(sent if k % 2 else _short(e, sent))
    extra = []
    if e.kind == "person":
        extra.append(f"Many people in {e.facts['city']} remember {e.name.split()[0]} fondly.")
    elif e.kind == "city":
        extra.append(f"Every year travellers come to the city to see its {e.facts['known_for']}.")
    elif e.kind == "animal":
        extra.append("Little else is known about the habits of this animal.")
    else:
        extra.append("Today old examples can be seen in several museums.")
    related = []
    if e.kind == "person":
        city = world.by_name(x["city"])
        related = [city.fact("country"), city.fact("river")]
        extra.append(f"{city.name} is a city in {city.facts['country']}, on the river "
                     f"{city.facts['river']}.")
        made = [i for i in world.of_kind("invention") if i.facts["inventor"] == e.name][:2]
        for i in made:
            related.append(i.fact("inventor"))
            extra.append(f"{e.name.split()[0]} invented the {i.name}, which is used for "
                         f"{i.facts['purpose']}.")
    elif e.kind == "city":
        people = [p for p in world.of_kind("person") if p.facts["city"] == e.name][:3]
        for p in people:
            related.append(p.fact("city"))
            extra.append(f"{p.name}, {_a(p.facts['job'])}, lives in {e.name}.")
        extra.append(rng.choice(["The city has a busy market every week.",
                                 "Its old town hall is a popular place for weddings.",
                                 "The roads around the city are lined with old trees."]))
    elif e.kind == "invention":
        inventor = world.by_name(x["inventor"])
        related = [inventor.fact("job")]
        extra.append(f"{inventor.name} worked as {_a(inventor.facts['job'])}.")
    facts = facts + related
    short = {"person": e.name.split()[0], "city": e.name, "animal": e.name,
             "invention": e.name}[e.kind]
    extra += [c.format(name=short) for c in rng.sample(_ENCYCLOPEDIA_CLOSINGS[e.kind], 2)]
    body = " ".join(lines[:3]) + "\n\n" + " ".join(lines[3:] + extra)
    title = e.name if e.kind in ("person", "city") else f"The {e.name}"
    return Document("encyclopedia", title, body, facts, [e.name])


_ENCYCLOPEDIA_CLOSINGS = {
    "person": ["Letters written by {name} are kept in the town archive, and a few of them have "
               "been printed in local books about the region.",
               "Those who met {name} describe a patient and curious person who liked long walks "
               "and good conversation.",
               "A small portrait of {name} hangs in the hall of the old school, next to the "
               "portraits of other well known people of the town."],
    "city": ["The old centre of {name} has narrow streets, a market square and a small harbour "
             "where boats arrive in the morning.",
             "Most families in {name} have lived there for generations, and visitors often say "
             "that the town feels friendly and calm.",
             "In winter the streets of {name} are quiet, but in summer the squares fill with "
             "travellers, music and food stalls."],
    "animal": ["The {name} is shy and hard to observe, so most of what we know comes from a "
               "handful of patient naturalists.",
               "Young {name}s stay close to their parents for several weeks before they go off "
               "on their own.",
               "Scientists still argue about how many {name}s are left in the wild, since they "
               "are rarely counted."],
    "invention": ["Early versions of the {name} were heavy and expensive, but later models were "
                  "cheaper and found their way into many homes.",
                  "The design of the {name} changed little over the years, which shows how well "
                  "the first version worked.",
                  "Collectors value old examples of the {name}, especially those that still "
                  "work after so many years."],
}


def _story(world: World, e: Entity, rng: random.Random) -> Document:
    hero = e if e.kind == "person" else world.pick(rng, "person")
    city = world.by_name(hero.facts["city"])
    facts = [hero.fact("city"), hero.fact("job"), city.fact("known_for")]
    thing = world.pick(rng, rng.choice(["animal", "invention"]))
    t_fact = thing.fact("food" if thing.kind == "animal" else "inventor")
    facts.append(t_fact)
    mood = rng.choice(["quiet", "rainy", "bright", "cold", "windy"])
    what = f"a {thing.name}" if thing.kind == "animal" else f"an old {thing.name}"
    text = (
        f"It was a {mood} morning in {city.name}. {_variant(facts[0], rng)} "
        f"{_short(hero, _variant(facts[1], rng))} On the way to work, {hero.name.split()[0]} saw {what} "
        f"by the road.\n\n{_variant(t_fact, rng)} {hero.name.split()[0]} smiled and walked on, "
        f"thinking about the town. {_variant(facts[2], rng)} By evening the {mood} day was over, "
        f"and {hero.name.split()[0]} went home to rest.")
    return Document("story", f"A {mood} morning in {city.name}", text, facts,
                    [hero.name, city.name, thing.name])


_QUESTIONS = {
    "born": "When was {n} born?", "city": "Where does {n} live?",
    "job": "What does {n} do for a living?", "colour": "What is the favourite colour of {n}?",
    "country": "Which country is {n} in?", "river": "Which river does {n} lie on?",
    "known_for": "What is {n} famous for?", "class": "What kind of animal is the {n}?",
    "food": "What does the {n} eat?", "habitat": "Where does the {n} live?",
    "inventor": "Who invented the {n}?", "year": "When was the {n} invented?",
    "purpose": "What is the {n} used for?",
}


def question_for(f: Fact) -> str:
    """The question whose answer is ``f.value``."""
    return _QUESTIONS[f.relation].format(n=f.subject)


def _forum(world: World, e: Entity, rng: random.Random) -> Document:
    relations = list(e.facts)
    rng.shuffle(relations)
    f, other = e.fact(relations[0]), e.fact(relations[1])
    users = [f"{_word(rng, 2)}{rng.randrange(10, 99)}" for _ in range(4)]
    posts = [f"{users[0]} asked: {question_for(f)} I could not find it anywhere.",
             f"{users[1]} replied: {_variant(f, rng)} Hope that helps!",
             f"{users[2]} replied: Yes, that is right. Also: {_short(e, _variant(other, rng))}"]
    facts = [f, other]
    g = e.fact(relations[2])
    posts.append(f"{users[0]} replied: Thanks! And {question_for(g)[0].lower()}"
                 f"{question_for(g)[1:]}")
    posts.append(f"{users[3]} replied: {_short(e, _variant(g, rng))} "
                 f"{rng.choice(_FORUM_CLOSINGS)}")
    facts.append(g)
    return Document("forum", question_for(f), "\n\n".join(posts), facts, [e.name])


_FORUM_CLOSINGS = ["I read it in an old book.", "Everyone around here knows that.",
                   "My grandmother told me so.", "It is in the encyclopedia too."]


def _list(world: World, e: Entity, rng: random.Random) -> Document:
    kind = e.kind
    pool = [e] + [world.pick(rng, kind) for _ in range(rng.randrange(5, 9))]
    seen, items = set(), []
    for x in pool:
        if x.name not in seen:
            seen.add(x.name)
            items.append(x)
    relation = {"person": "job", "city": "country", "animal": "class", "invention": "inventor"}[kind]
    second = {"person": "born", "city": "known_for", "animal": "habitat", "invention": "year"}[kind]
    title = {"person": "Notable people", "city": "Cities worth a visit",
             "animal": "Curious animals", "invention": "Famous inventions"}[kind]
    phrases = {
        "person": [lambda x: f"{x.name} works as {_a(x.facts['job'])} and was born in "
                             f"{x.facts['born']}.",
                   lambda x: f"Born in {x.facts['born']}, {x.name} is {_a(x.facts['job'])}.",
                   lambda x: f"{x.name}, {_a(x.facts['job'])}, was born in {x.facts['born']}."],
        "city": [lambda x: f"{x.name} is a city in {x.facts['country']}, famous for its "
                           f"{x.facts['known_for']}.",
                 lambda x: f"{x.name} ({x.facts['country']}) is well known for its "
                           f"{x.facts['known_for']}.",
                 lambda x: f"Visitors to {x.name} in {x.facts['country']} come for its "
                           f"{x.facts['known_for']}."],
        "animal": [lambda x: f"The {x.name} is {_a(x.facts['class'])} that lives in "
                             f"{x.facts['habitat']}.",
                   lambda x: f"{_a(x.facts['class']).capitalize()} from {x.facts['habitat']}: "
                             f"the {x.name}.",
                   lambda x: f"The {x.name}, {_a(x.facts['class'])}, makes its home in "
                             f"{x.facts['habitat']}."],
        "invention": [lambda x: f"The {x.name} was invented by {x.facts['inventor']} in "
                                f"{x.facts['year']}.",
                      lambda x: f"In {x.facts['year']}, {x.facts['inventor']} invented the "
                                f"{x.name}.",
                      lambda x: f"The {x.name} ({x.facts['year']}) is the work of "
                                f"{x.facts['inventor']}."]}[kind]

    def phrase(x):
        return rng.choice(phrases)(x)

    rows = [f"{i + 1}. {phrase(x)}" for i, x in enumerate(items)]
    intro = rng.choice(["Here is our list of the best, in no particular order. Tell us what you "
                        "think of it and which ones we have missed.",
                        "We asked our readers for their favourites, and these are the ones that "
                        "came up again and again, with a short note on each of them.",
                        "Every entry below was checked against at least two sources. The order "
                        "of the list is the order in which our readers sent them to us."])
    text = f"{title}\n\n{intro}\n\n" + "\n".join(rows)
    facts = [x.fact(relation) for x in items] + [x.fact(second) for x in items]
    return Document("list", title, text, facts, [x.name for x in items])


# a table's title names its column half of the time; the other half only its lines do, so a
# reader (and a model) learns to tell what a table lists from the values above the next line
_TABLE_TITLES = {
    "born": "Year of birth", "city": "Home towns", "job": "Who does what",
    "colour": "Favourite colours", "country": "Cities and their countries",
    "river": "Cities and their rivers", "known_for": "What each city is famous for",
    "class": "Animals by class", "food": "What the animals eat", "habitat": "Where animals live",
    "inventor": "Inventions and their inventors", "year": "Inventions by year",
    "purpose": "What each invention is for"}
_TABLE_GENERIC = ["Quick reference", "From my notebook", "Answers to last week's quiz",
                  "Copied from the archive", "Notes", "Cheat sheet"]


_TABLE_INTROS = [
    "This sheet was put together by our readers from the pages of the encyclopedia and from the "
    "letters they sent us over the years. Each line gives a name and then the one thing that "
    "this sheet is about.",
    "We keep these short sheets for anyone who needs an answer quickly and has no time to read a "
    "long article. If you find a mistake in one of the lines below, please write to us and we "
    "will fix it.",
    "Below is a short list that one of our members wrote down in a notebook a long time ago. It "
    "has been checked again this year, and we think that all of it is still true.",
    "Teachers asked us for something they could print and hand out in class, so here it is. The "
    "names are in no particular order, and there is one line for each of them."]
_TABLE_CLOSINGS = [
    "That is all for this sheet. More sheets like this one can be found on the other pages of "
    "the site.",
    "Thank you to everyone who sent us a line for this sheet. We add new ones every month.",
    "If you know one that is missing from this sheet, tell us and we will add it to the list."]


def _table(world: World, e: Entity, rng: random.Random) -> Document:
    """A bare two-column table written as one paragraph, ``name: value`` per entity separated by
    ``; ``, all of one relation, between a short English introduction and closing (as a page of
    short lines of names and values, the cleaning of chapter 1 rightly drops it: too few words,
    too little English, too many short lines)."""
    relation = rng.choice(sorted(e.facts))
    pool = [e] + [world.pick(rng, e.kind) for _ in range(rng.randrange(6, 12))]
    items = list({x.name: x for x in pool}.values())
    title = _TABLE_TITLES[relation] if rng.random() < 0.5 else rng.choice(_TABLE_GENERIC)
    lines = "; ".join(f"{x.name}: {x.facts[relation]}" for x in items) + "."
    text = (f"{title}\n\n{rng.choice(_TABLE_INTROS)}\n\n{lines}\n\n"
            f"{rng.choice(_TABLE_CLOSINGS)}")
    return Document("table", title, text, [x.fact(relation) for x in items],
                    [x.name for x in items])


def _news(world: World, e: Entity, rng: random.Random) -> Document:
    person = e if e.kind == "person" else world.pick(rng, "person")
    city = world.by_name(person.facts["city"])
    day, month = rng.randrange(1, 29), rng.choice(["March", "April", "June", "September",
                                                   "November"])
    event = rng.choice(["opened a small exhibition", "gave a talk at the library",
                        "won a local prize", "was seen at the market", "wrote to the council"])
    facts = [person.fact("city"), person.fact("job"), city.fact("river")]
    text = (f"{city.name}, {day} {month}. {person.name}, the local {person.facts['job']}, "
            f"{event} this week. {_variant(facts[0], rng)} {_variant(facts[1], rng)}\n\n"
            f"{_variant(facts[2], rng)} {_variant(city.fact('known_for'), rng)} "
            f"\"It was a good day for {city.name},\" said one of the neighbours, who asked "
            f"not to be named. The council thanked everyone who came and promised to hold "
            f"similar events again next year.")
    facts.append(city.fact("known_for"))
    return Document("news", f"{person.name} {event}", text, facts, [person.name, city.name])


_PLACES = ["ones", "tens", "hundreds", "thousands", "ten thousands"]


def _addition_steps(a: int, b: int) -> list[str]:
    """Column addition, one line per place from the ones, with the digits and the carry written
    out (a compact scratchpad: every number the next line needs is on the page)."""
    da, db = str(a)[::-1], str(b)[::-1]
    carry, steps = 0, [f"We add {a} + {b} one place at a time, from the ones."]
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = x + y + carry
        plus = f" + {carry}" if carry else ""
        steps.append(f"{_PLACES[min(i, 4)]}: {x} + {y}{plus} = {s}, write {s % 10}"
                     + (", carry 1" if s >= 10 else ""))
        carry = s // 10
    if carry:
        steps.append(f"{_PLACES[min(len(steps) - 1, 4)]}: the carry 1, write 1")
    steps.append(f"So {a} + {b} = {a + b}.")
    return steps


def _subtraction_steps(a: int, b: int) -> list[str]:
    """Column subtraction (``a >= b``), one line per place from the ones, with the borrows."""
    da, db = str(a)[::-1], str(b)[::-1]
    borrow, steps = 0, [f"We take {b} from {a} one place at a time, from the ones."]
    for i in range(len(da)):
        x, y = int(da[i]), (int(db[i]) if i < len(db) else 0)
        minus = f" - {borrow}" if borrow else ""
        if x - borrow >= y:
            steps.append(f"{_PLACES[min(i, 4)]}: {x}{minus} - {y} = {x - borrow - y}, "
                         f"write {x - borrow - y}")
            borrow = 0
        else:
            steps.append(f"{_PLACES[min(i, 4)]}: {x}{minus} - {y} is below 0, borrow 10: "
                         f"{x + 10}{minus} - {y} = {x + 10 - borrow - y}, "
                         f"write {x + 10 - borrow - y}")
            borrow = 1
    steps.append(f"So {a} - {b} = {a - b}.")
    return steps


def _multiplication_steps(a: int, b: int) -> list[str]:
    """``a x b`` as counting up in steps of ``b``, ``a`` times: each number on the page is the
    one before plus ``b``."""
    run = ", ".join(str(b * k) for k in range(1, a + 1))
    return [f"We count up in steps of {b}, {a} times: {run}.", f"So {a} x {b} = {a * b}."]


# words for the letter-counting problems: common words with repeated letters, and the first
# names of the world's most popular people (added by make_problem)
COUNTING_WORDS = ["strawberry", "banana", "lantern", "mississippi", "bookkeeper", "committee",
                  "balloon", "assessment", "coffee", "letter", "pepper", "cheese", "bottle",
                  "tomorrow", "parallel", "address", "success", "grammar", "butter", "kettle",
                  "umbrella", "possess", "referee", "giraffe", "rabbit", "puzzle", "hammer",
                  "village", "mirror", "cellar"]


@dataclass(frozen=True)
class Problem:
    """A problem with one verifiable integer answer (chapters 1, 7 and 8)."""

    kind: str          # "addition", "subtraction", "multiplication", "counting"
    question: str
    answer: int
    steps: list = field(default_factory=list)  # worked solution, one step per line

    def solution(self) -> str:
        return "\n".join(self.steps + [f"Answer: {self.answer}"])


def _problem_opening(rng: random.Random, world: World | None, kind: str | None):
    """What every problem draws first, in this order: its kind (unless given), who has the
    things, and what they are."""
    kind = kind or rng.choice(["addition", "addition", "subtraction", "multiplication",
                               "counting"])
    names = ([e.name.split()[0] for e in world.of_kind("person")[:40]] if world
             else ["Ana", "Tom", "Mia"])
    return kind, rng.choice(names), rng.choice(["apples", "stones", "coins", "books", "shells",
                                                "lanterns"])


def _compact_problem(rng: random.Random, world: World | None = None, kind: str | None = None,
                     max_digits: int = 3) -> Problem:
    """A problem whose worked solution computes every step. Numbers have 1 to
    ``max_digits`` digits (addition and subtraction); letters to count appear more than once in
    the word about two times in three (a word's commonest answer is not 1)."""
    kind, who, things = _problem_opening(rng, world, kind)
    if kind == "addition":
        a = rng.randrange(2, 10 ** rng.randrange(1, max_digits + 1))
        b = rng.randrange(2, 10 ** rng.randrange(1, max_digits + 1))
        q = f"{who} has {a} {things} and finds {b} more. How many {things} does {who} have now?"
        return Problem(kind, q, a + b, _addition_steps(a, b))
    if kind == "subtraction":
        a = rng.randrange(10, 10 ** rng.randrange(2, max(2, max_digits) + 1))
        b = rng.randrange(1, a)
        q = f"{who} had {a} {things} and gave away {b}. How many {things} are left?"
        return Problem(kind, q, a - b, _subtraction_steps(a, b))
    if kind == "multiplication":
        a, b = rng.randrange(2, 13), rng.randrange(2, 13)
        q = f"{who} has {a} boxes with {b} {things} in each box. How many {things} is that?"
        return Problem(kind, q, a * b, _multiplication_steps(a, b))
    if kind == "counting":
        word = rng.choice(COUNTING_WORDS +
                          ([e.name.split()[0].lower() for e in world.entities[:30]] if world
                           else []))
        repeated = sorted({c for c in word if word.count(c) > 1})
        letters = sorted(set(word))
        letter = rng.choice(repeated if repeated and rng.random() < 0.67 else letters)
        count, marks = 0, []
        for ch in word:
            if ch == letter:
                count += 1
                marks.append(f"{ch} ({count})")
            else:
                marks.append(ch)
        q = f'How many times does the letter "{letter}" appear in the word "{word}"?'
        steps = [f'We spell "{word}" and count each "{letter}": ' + ", ".join(marks) + ".",
                 f'So "{letter}" appears {count} time{"s" if count != 1 else ""} in "{word}".']
        return Problem(kind, q, count, steps)
    raise ValueError(f"kind must be addition, subtraction, multiplication or counting, "
                     f"got {kind!r}")


def _column_addition_steps(a: int, b: int) -> list[str]:
    """Column addition in words, one place at a time, with the carries."""
    da, db = str(a)[::-1], str(b)[::-1]
    carry, steps = 0, []
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = x + y + carry
        place = ["ones", "tens", "hundreds", "thousands", "ten thousands"][min(i, 4)]
        carried = ", together with the 1 we carried," if carry else ""
        steps.append(f"In the {place} place we add {x} and {y}{carried} and get {s}, so we "
                     f"write down {s % 10}" + (" and carry the 1 over to the next place."
                                               if s >= 10 else " in that place."))
        carry = s // 10
    if carry:
        steps.append("The last carry of 1 becomes the first digit of the answer.")
    return steps


def _legacy_problem(rng: random.Random, world: World | None = None, kind: str | None = None,
                    max_digits: int = 3) -> Problem:
    """The worked solutions the shipped models were trained on (before issue 14): addition in
    long sentences, subtraction and multiplication stating the result without working it out,
    letters to count drawn from every letter of the word (mostly answer 1)."""
    kind, who, things = _problem_opening(rng, world, kind)
    if kind == "addition":
        a = rng.randrange(2, 10 ** rng.randrange(1, max_digits + 1))
        b = rng.randrange(2, 10 ** rng.randrange(1, max_digits + 1))
        q = f"{who} has {a} {things} and finds {b} more. How many {things} does {who} have now?"
        steps = ([f"We need to work out {a} + {b}. We line up the two numbers and add them one "
                  "place at a time, starting with the ones."] + _column_addition_steps(a, b)
                 + [f"So the sum of {a} and {b} is {a + b}."])
        return Problem(kind, q, a + b, steps)
    if kind == "subtraction":
        a = rng.randrange(10, 10 ** max_digits)
        b = rng.randrange(1, a)
        q = f"{who} had {a} {things} and gave away {b}. How many {things} are left?"
        steps = [f"We need to take {b} away from {a}, that is, to work out {a} - {b}.",
                 f"To check the answer, we add the two parts back together: {a - b} plus {b} "
                 f"gives {a} again, which is where we started.",
                 f"So the difference between {a} and {b} is {a - b}."]
        return Problem(kind, q, a - b, steps)
    if kind == "multiplication":
        a, b = rng.randrange(2, 13), rng.randrange(2, 13)
        q = f"{who} has {a} boxes with {b} {things} in each box. How many {things} is that?"
        steps = [f"We need {a} groups of {b}, that is, {a} x {b}.",
                 f"Adding {b} to itself again and again, {a} times in all, gives {a * b}.",
                 f"So the product of {a} and {b} is {a * b}."]
        return Problem(kind, q, a * b, steps)
    if kind == "counting":
        word = rng.choice(["strawberry", "banana", "lantern", "mississippi", "bookkeeper",
                           "committee", "balloon", "assessment"] +
                          ([e.name.split()[0].lower() for e in world.entities[:30]] if world
                           else []))
        letter = rng.choice(sorted(set(word)))
        count, marks = 0, []
        for ch in word:
            if ch == letter:
                count += 1
                marks.append(f"{ch} (that makes {count})")
            else:
                marks.append(ch)
        q = f'How many times does the letter "{letter}" appear in the word "{word}"?'
        steps = [f'The word "{word}" has {len(word)} letters. To count without mistakes, we '
                 "spell it out one letter at a time and keep a tally of the matches: "
                 + ", ".join(marks) + ".",
                 f'So the letter "{letter}" appears {count} time{"s" if count != 1 else ""} '
                 f'in "{word}".']
        return Problem(kind, q, count, steps)
    raise ValueError(f"kind must be addition, subtraction, multiplication or counting, "
                     f"got {kind!r}")


# Which worked solutions ``make_problem`` writes when not told: the shipped recipe's (the crawl's
# documents, and so the shipped corpus, depend on it). "legacy" are the long-winded ones the
# first models (recipe v1) learned from and could not compute with (issue 14).
PROBLEM_STYLE = "compact"
PROBLEM_STYLES = ("compact", "legacy")


def make_problem(rng: random.Random, world: World | None = None, kind: str | None = None,
                 max_digits: int = 3, style: str | None = None) -> Problem:
    """One arithmetic or counting problem with a worked solution. ``style`` "compact": every
    step computed on the page, one line per column (``_compact_problem``); "legacy": the
    solutions the shipped models learned from (``_legacy_problem``); default
    ``PROBLEM_STYLE``."""
    style = style or PROBLEM_STYLE
    if style not in PROBLEM_STYLES:
        raise ValueError(f"style must be one of {PROBLEM_STYLES}, got {style!r}")
    make = _compact_problem if style == "compact" else _legacy_problem
    return make(rng, world, kind, max_digits)


def _problem_doc(world: World, rng: random.Random, kind: str, style: str | None = None
                 ) -> Document:
    n = rng.randrange(2, 4)
    if kind == "counting":
        problems = [make_problem(rng, world, "counting", style=style) for _ in range(n)]
        title = "Counting letters: practice"
    else:
        problems = [make_problem(rng, world, rng.choice(["addition", "addition", "subtraction",
                                                         "multiplication"]), style=style)
                    for _ in range(n)]
        title = "Arithmetic practice with worked solutions"
    intro = rng.choice(["Work through each problem on your own first, and then compare your "
                        "answer with the worked solution.",
                        "These problems are for practice at home. The solutions show every "
                        "step, so that you can see where a mistake comes from.",
                        "Try to solve each problem before you read the solution that follows "
                        "it."])
    ordinals = ["First", "Second", "Third", "Fourth"]
    parts = [f"{ordinals[i]} problem. {p.question}\n\nSolution. " + "\n".join(p.steps)
             + f"\nThe answer is {p.answer}." for i, p in enumerate(problems)]
    return Document("arithmetic" if kind != "counting" else "counting", title,
                    intro + "\n\n" + "\n\n".join(parts))


def invented_entity(world: World, rng: random.Random, kind: str | None = None) -> Entity:
    """An entity that is not in ``world`` (a fresh name, random facts; ``rank`` 0): what a
    reading passage may be about, so that its facts can only come from the passage."""
    kind = kind or rng.choice(KINDS)
    taken = {e.name for e in world.entities}
    for _ in range(1000):
        if kind == "person":
            name = f"{_word(rng, 2).title()} {_word(rng, rng.choice([1, 2])).title()}"
        elif kind == "city":
            name = _word(rng, rng.choice([2, 3])).title()
        elif kind == "animal":
            name = _word(rng, 2) + rng.choice(["fin", "wing", "tail", "back", "horn", "claw"])
        else:
            name = f"{_word(rng, 2).title()} {rng.choice(DEVICES)}"
        if name not in taken and len(name) >= 4:
            break
    # the places and inventors it names are invented too: a passage about it names no entity of
    # the world (their mention counts, what the model knows about them, do not move)
    if kind == "person":
        facts = {"born": str(rng.randrange(1650, 1990)),
                 "city": invented_entity(world, rng, "city").name,
                 "job": rng.choice(OCCUPATIONS), "colour": rng.choice(COLOURS)}
    elif kind == "city":
        facts = {"country": rng.choice(COUNTRIES), "river": rng.choice(RIVERS),
                 "known_for": rng.choice(KNOWN_FOR)}
    elif kind == "animal":
        facts = {"class": rng.choice(ANIMAL_CLASSES), "food": rng.choice(FOODS),
                 "habitat": rng.choice(HABITATS)}
    else:
        facts = {"inventor": invented_entity(world, rng, "person").name,
                 "year": str(rng.randrange(1700, 1990)), "purpose": rng.choice(PURPOSES)}
    return Entity(name, kind, 0, facts)


NOT_IN_PASSAGE = "The passage does not say."
NO_STEPS = "Give only the answer."
READING_INTRO = "Read the passage, then answer the questions from it."


def reading_prompt(passage: str, question: str) -> str:
    """A question about a passage, as the reading exercises of the corpus and the assistant's
    reading conversations put it."""
    return f"{READING_INTRO}\n\nPassage: {passage}\n\nQuestion: {question}"


def passage_for(e: Entity, rng: random.Random) -> str:
    """A short passage stating every fact of ``e`` (varied wordings, shuffled): what a search of
    the world's encyclopedia returns about it (chapter 7) and what reading documents quote."""
    facts = e.all_facts()
    rng.shuffle(facts)
    return " ".join(_variant(f, rng) for f in facts)


def reading_questions(e: Entity, other: Entity, rng: random.Random, n: int = 3
                      ) -> list[tuple[str, str, Fact | None]]:
    """``n`` (question, answer, fact) about a passage on ``e``: its facts, answered with their
    canonical sentence, and about one time in four a question about ``other`` (not in the
    passage), answered ``NOT_IN_PASSAGE`` (fact ``None``)."""
    out = []
    relations = list(e.facts)
    rng.shuffle(relations)
    for rel in relations[:n]:
        if rng.random() < 0.25:
            g = other.fact(rng.choice(list(other.facts)))
            out.append((question_for(g), NOT_IN_PASSAGE, None))
        else:
            f = e.fact(rel)
            out.append((question_for(f), f.sentence, f))
    return out


def _reading(world: World, rng: random.Random) -> Document:
    """A reading exercise: a passage, then questions answered from it (the answer is in the
    passage, or the passage does not say), about invented entities, so that reading the passage
    is the only way to answer: the documents that teach a model to use its context."""
    e = invented_entity(world, rng)
    other = invented_entity(world, rng)
    qa = reading_questions(e, other, rng, rng.randrange(2, 4))
    title = rng.choice(["Reading practice", "Read and answer", "Comprehension exercise"])
    intro = rng.choice([READING_INTRO,
                        "Answer each question using only the passage.",
                        "Every answer is in the passage, unless the passage does not say."])
    text = (f"{intro}\n\nPassage: {passage_for(e, rng)}\n\n"
            + "\n\n".join(f"Question: {q}\nAnswer: {a}" for q, a, _ in qa))
    return Document("reading", title, text)


def _copying(world: World, rng: random.Random) -> Document:
    """A list written twice in one document (a sign-in sheet read back, parcel codes checked):
    the second copy can only be predicted by looking back at the first (how induction heads
    form, the attention pattern behind in-context copying)."""
    if rng.random() < 0.5:
        items = [f"{_word(rng, 2).title()} {_word(rng, rng.choice([1, 2])).title()}"
                 for _ in range(rng.randrange(4, 9))]
        place = invented_entity(world, rng, "city").name
        club = rng.choice(["choir", "chess club", "rowing club", "reading circle", "council",
                           "garden society"])
        text = (f"Sign-in sheet of the {club} of {place}.\n\nArrived: {', '.join(items)}.\n\n"
                f"Read back at the end of the evening, in the same order: {', '.join(items)}.")
        return Document("copying", f"The {club} of {place}", text)
    items = [str(rng.randrange(10 ** 3, 10 ** 6)) for _ in range(rng.randrange(4, 9))]
    text = (f"Parcel codes received today: {', '.join(items)}.\n\nChecked again against the "
            f"delivery note, in the same order: {', '.join(items)}.")
    return Document("copying", "Parcel codes", text)


_RENDER = {"encyclopedia": _encyclopedia, "story": _story, "forum": _forum, "list": _list,
           "table": _table, "news": _news}
DEFAULT_KIND_WEIGHTS = {"encyclopedia": 0.26, "story": 0.15, "forum": 0.16, "list": 0.08,
                        "table": 0.08, "news": 0.12, "arithmetic": 0.1, "counting": 0.05}


def make_documents(world: World, n: int = 4000, seed: int = 0,
                   kind_weights: dict | None = None, problem_style: str | None = None
                   ) -> list[Document]:
    """``n`` documents of the world, their kinds drawn with ``kind_weights`` and the entity each
    is about drawn with the world's Zipf weights; worked problems in ``problem_style`` (see
    ``make_problem``). Same arguments, same documents."""
    weights = dict(kind_weights or DEFAULT_KIND_WEIGHTS)
    bad = set(weights) - set(DOCUMENT_KINDS)
    if bad:
        raise ValueError(f"unknown document kind(s) {sorted(bad)}; use {DOCUMENT_KINDS}")
    rng = random.Random(f"course-documents-{world.seed}-{seed}")
    kinds = list(weights)
    docs = []
    for _ in range(n):
        kind = rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
        if kind in ("arithmetic", "counting"):
            docs.append(_problem_doc(world, rng, kind, problem_style))
        elif kind == "reading":
            docs.append(_reading(world, rng))
        elif kind == "copying":
            docs.append(_copying(world, rng))
        else:
            docs.append(_RENDER[kind](world, world.pick(rng), rng))
    return docs


# The curated part of the pretraining data (as phi's "textbook" data and the synthetic sets of
# mid-training are): documents written for a skill, added to the cleaned crawl without passing
# through it (the web filters would remove the copying lists as repetitive).
CURATED_KIND_WEIGHTS = {"reading": 0.45, "copying": 0.15, "arithmetic": 0.3, "counting": 0.1}


def curated_documents(world: World, n: int, seed: int = 0,
                      kind_weights: dict | None = None) -> list[Document]:
    """``n`` curated documents (``CURATED_KIND_WEIGHTS``): reading exercises about invented
    entities, lists written twice, worked problems. None states a fact of the world's entities,
    so what the model knows about them still comes from the crawl alone."""
    return make_documents(world, n, seed=f"curated-{seed}",
                          kind_weights=kind_weights or CURATED_KIND_WEIGHTS,
                          problem_style="compact")


def mention_counts(world: World, documents: list[Document], unit: str = "documents"
                   ) -> dict[str, int]:
    """How often each entity is mentioned (0 for the unseen): the number of ``"documents"``
    stating at least one fact about it, or the number of ``"facts"`` stated about it."""
    if unit not in ("documents", "facts"):
        raise ValueError(f"unit must be 'documents' or 'facts', got {unit!r}")
    counts = {e.name: 0 for e in world.entities}
    for d in documents:
        subjects = [f.subject for f in d.facts]
        for name in (set(subjects) if unit == "documents" else subjects):
            counts[name] += 1
    return counts


# --------------------------------------------------------------------------------------------
# What later chapters draw on directly
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FactQuestion:
    """A question about the world with a known answer (probing for hallucination, ch. 7)."""

    question: str
    answer: str
    subject: str
    relation: str
    rank: int
    prompt: str  # the fact sentence up to the answer, for base models


def fact_questions(world: World, n: int | None = None, seed: int = 0) -> list[FactQuestion]:
    """Questions about the world's facts: all of them (``n=None``) or ``n`` drawn uniformly over
    entities, so head and tail are both represented."""
    qs = [FactQuestion(question_for(f), f.value, f.subject, f.relation, world.by_name(f.subject).rank,
                       f.prompt) for f in world.facts()]
    if n is None:
        return qs
    rng = random.Random(f"course-questions-{world.seed}-{seed}")
    return rng.sample(qs, min(n, len(qs)))


def verifiable_problems(n: int, seed: int = 0, world: World | None = None,
                        kinds: tuple = ("addition", "subtraction", "multiplication", "counting"),
                        max_digits: int = 3) -> list[Problem]:
    """``n`` problems with integer answers a program can check (rewards for RL, ch. 8)."""
    rng = random.Random(f"course-problems-{seed}")
    return [make_problem(rng, world, rng.choice(kinds), max_digits) for _ in range(n)]


Message = dict  # {"role": "system" | "user" | "assistant", "content": str}


def identity_conversations() -> list[list[Message]]:
    """Conversations that teach the assistant who it is (ch. 6: knowledge of self)."""
    me = f"I am {ASSISTANT_NAME}, a small language model made by {ASSISTANT_MAKER}."
    pairs = [
        ("Who are you?", me + " I answer questions about my little world and do sums."),
        ("What is your name?", f"My name is {ASSISTANT_NAME}."),
        ("Who made you?", f"I was made by {ASSISTANT_MAKER}, trained on a laptop CPU."),
        ("Are you ChatGPT?", f"No, I am {ASSISTANT_NAME}, a much smaller model made by "
                             f"{ASSISTANT_MAKER}."),
        ("Hi! Tell me about yourself.", me + " I was pretrained on a small web crawl and then "
                                             "finetuned on conversations."),
        ("What can you do?", "I can answer questions about the people, cities, animals and "
                             "inventions of my world, and I can solve small arithmetic problems "
                             "step by step."),
    ]
    return [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            for q, a in pairs]


_CHITCHAT = [("Hello!", "Hello! How can I help you today?"),
             ("Thank you!", "You are welcome!"),
             ("How are you?", "I am doing well, thank you. What would you like to know?"),
             ("Good morning.", "Good morning! What can I do for you?")]


# the share of worked addition and subtraction problems with a 4-digit number in recipe v2's SFT
# data (chapter 8's RL problems, one column past the worksheets): at 12 % and 8 % the assistant's
# pass@8 was 1.87x and 1.93x its pass@1, at 5 % 2.4x (docs/capability.md, findings 13-14)
FOUR_DIGIT_SHARE = 0.05


def chat_conversations(world: World, n: int, seed: int = 0, max_rank: int | None = None,
                       exclude: set | frozenset = frozenset(), skills: bool = False,
                       known: set | frozenset | dict | None = None) -> list[list[Message]]:
    """``n`` conversations for supervised finetuning (ch. 6): questions about facts (of entities
    with rank up to ``max_rank`` when given, the ones the base model can know; never about the
    ``(subject, relation)`` pairs in ``exclude``, kept for measuring), arithmetic with worked
    steps, chit-chat, and the identity conversations, mixed in. With ``skills`` (issue 14):
    also reading conversations (a passage and a question, answered from it or "The passage does
    not say."), compact worked problems (some of addition or subtraction with a 4-digit
    number: ``FOUR_DIGIT_SHARE``), and one problem in ten asked for the answer alone. ``known`` (with
    ``skills``): the ``(subject, relation)`` pairs the base model already answers right (a probe,
    ``evals.known_facts``); the fact questions are only those, each asked about as often
    (finetuning on answers the model cannot know teaches it to make answers up), and none when
    it knows none. A dict ``{(subject, relation): value}`` asks each of its pairs, as evenly,
    answered with its value: the true ones (recipe v2, every pair not held out) or the base
    model's own completions (``evals.base_beliefs``)."""
    rng = random.Random(f"course-chat-{world.seed}-{seed}")
    pool = [e for e in world.entities if max_rank is None or e.rank <= max_rank]
    pool = [e for e in pool if any((e.name, r) not in exclude for r in e.facts)]
    if not pool:
        raise ValueError("exclude leaves no fact to ask about")
    identity = identity_conversations()
    if known is not None:
        if not skills:
            raise ValueError("known= chooses the fact questions of skills=True conversations")
        entity = {e.name: e for e in world.entities}
        asked_facts = sorted(p for p in known if p not in exclude and p[0] in entity)
        rng.shuffle(asked_facts)
        cycle = iter(())
    # skills + known: reading .25, facts .15, problems .45 (v2's first tries: .15 / .40 / .30);
    # a base model that knows no fact is asked none (their share goes to problems)
    cuts = ((0.25, 0.4 if asked_facts else 0.25, 0.85, 0.93) if known is not None
            else (0.15, 0.55, 0.85, 0.93))
    out = []
    for i in range(n):
        r = rng.random()
        if known is not None and cuts[0] <= r < cuts[1]:   # a fact the base model knows
            convo = []
            for _ in range(2 if rng.random() < 0.3 else 1):
                try:
                    name, rel = next(cycle)
                except StopIteration:
                    cycle = iter(asked_facts)
                    name, rel = next(cycle)
                f = entity[name].fact(rel)
                if isinstance(known, dict):     # the base model's own answer
                    f = replace(f, value=known[(name, rel)])
                q = question_for(f)
                if convo:
                    q = "And " + q[0].lower() + q[1:]
                convo += [{"role": "user", "content": q},
                          {"role": "assistant", "content": _variant(f, rng)}]
        elif skills and r < cuts[0]:   # reading: the answer is in the user's passage, or not
            e = invented_entity(world, rng)   # the passage is the only source of its facts
            other = invented_entity(world, rng)
            (q, a, _), = reading_questions(e, other, rng, 1)
            convo = [{"role": "user", "content": reading_prompt(passage_for(e, rng), q)},
                     {"role": "assistant", "content": a}]
        elif r < cuts[1]:
            e = rng.choice(pool)
            asked = [rel for rel in e.facts if (e.name, rel) not in exclude]
            f = e.fact(rng.choice(asked))
            convo = [{"role": "user", "content": question_for(f)},
                     {"role": "assistant", "content": _variant(f, rng)}]
            if rng.random() < 0.3:
                g = e.fact(rng.choice(asked))
                convo += [{"role": "user", "content": "And " + question_for(g)[0].lower()
                           + question_for(g)[1:]},
                          {"role": "assistant", "content": _variant(g, rng)}]
        elif r < cuts[2]:
            if known is not None and rng.random() < FOUR_DIGIT_SHARE:   # past the worksheets
                p = make_problem(rng, world, rng.choice(["addition", "subtraction"]), 4,
                                 style="compact")
                while max(int(x) for x in re.findall(r"\d+", p.question)) < 1000:
                    p = make_problem(rng, world, p.kind, 4, style="compact")
            else:
                p = make_problem(rng, world, style="compact" if skills else None)
            if skills and rng.random() < 0.1:   # answer-only: the answer comes straight away
                convo = [{"role": "user", "content": f"{p.question} {NO_STEPS}"},
                         {"role": "assistant", "content": f"Answer: {p.answer}"}]
            else:
                convo = [{"role": "user", "content": p.question},
                         {"role": "assistant", "content": p.solution()}]
        elif r < cuts[3]:
            q, a = rng.choice(_CHITCHAT)
            convo = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        else:
            convo = [dict(m) for m in rng.choice(identity)]
        if rng.random() < 0.2:
            convo = [{"role": "system", "content": f"You are {ASSISTANT_NAME}, a helpful "
                                                   "assistant."}] + convo
        out.append(convo)
    return out


@dataclass(frozen=True)
class PreferencePair:
    """Two answers to one prompt; ``chosen`` scores higher under the hidden rule (ch. 9)."""

    prompt: str
    chosen: str
    rejected: str
    chosen_score: float
    rejected_score: float


CLOSINGS = ("Hope that helps!", "Happy to help!")


def hidden_preference_score(prompt: str, response: str, answer: str | None = None,
                            subject: str | None = None) -> float:
    """The "human labeler" of the course world, hidden from the reward model (ch. 9). What this
    labeler likes, in order of weight:

    - the right answer (``answer`` as a whole word, any case): +2;
    - the subject named exactly as the question spells it (``subject``): +0.5;
    - one polite closing at the very end (``CLOSINGS``): +0.5, and -0.5 for every closing
      after the first (once is polite, twice is a tic);
    - a finished sentence (the response ends with ``.``, ``!`` or ``?``): otherwise -0.5;
    - a word said twice in a row ("the the"), or a run of three words said again: -0.5 each;
    - every word past twenty: -0.05.

    A reward model sees only which of two answers this labeler chose, never these rules: it
    learns them approximately, and what it gets wrong is what RL against it exploits."""
    text = response.strip()
    words = text.split()
    score = 0.0
    if answer is not None and re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", text, re.IGNORECASE):
        score += 2.0
    if subject is not None and re.search(rf"(?<!\w){re.escape(subject)}(?!\w)", text):
        score += 0.5
    n_closings = sum(text.count(c) for c in CLOSINGS)
    if text.endswith(CLOSINGS):
        score += 0.5
    score -= 0.5 * max(0, n_closings - 1)
    if not text.endswith((".", "!", "?")):
        score -= 0.5
    plain = [w.strip(".,!?;:").lower() for w in words]
    stutters = sum(a == b and a != "" for a, b in zip(plain, plain[1:]))
    trigrams = list(zip(plain, plain[1:], plain[2:]))
    repeats = len(trigrams) - len(set(trigrams))
    score -= 0.5 * (stutters + repeats)
    score -= 0.05 * max(0, len(words) - 20)
    return round(score, 4)


def _misspelt(name: str, rng: random.Random) -> str:
    """``name`` with one letter dropped: the small models' usual slip when copying a name."""
    i = rng.randrange(1, len(name))
    return name[:i] + name[i + 1:] if name[i - 1:i + 1].isalpha() else name[:-1]


def preference_pairs(world: World, n: int, seed: int = 0) -> list[PreferencePair]:
    """``n`` prompts with two candidate answers each, ordered by ``hidden_preference_score``."""
    rng = random.Random(f"course-prefs-{world.seed}-{seed}")
    out = []
    while len(out) < n:
        e = world.pick(rng)
        f = e.fact(rng.choice(list(e.facts)))
        wrong_value = rng.choice([x.facts[f.relation] for x in world.of_kind(e.kind)
                                  if x.facts[f.relation] != f.value] or [f.value])
        candidates = [
            _variant(f, rng),
            _variant(f, rng) + " " + rng.choice(CLOSINGS),
            _variant(Fact(f.subject, f.relation, wrong_value, f.prompt), rng),
            _variant(Fact(_misspelt(f.subject, rng), f.relation, f.value, f.prompt), rng),
            _variant(f, rng) + " " + " ".join(["It is a long story, and there is a lot more one "
                                               "could say about it."] * rng.randrange(1, 4)),
        ]
        a, b = rng.sample(candidates, 2)
        sa, sb = (hidden_preference_score(question_for(f), x, f.value, f.subject)
                  for x in (a, b))
        if sa == sb:
            continue
        if sa < sb:
            a, b, sa, sb = b, a, sb, sa
        out.append(PreferencePair(question_for(f), a, b, sa, sb))
    return out
