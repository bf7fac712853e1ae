"""Language: translation, detection, definitions, synonyms and grammar."""

from __future__ import annotations

from typing import Any, Literal

from counterpoint.finetune.library._base import Domain, Fake
from counterpoint.finetune.library.values import LANGUAGES, ints, pick
from counterpoint.tools import tool

DOMAIN = Domain("language")
_SENTENCES = (
    "Where is the train station",
    "I would like a coffee please",
    "The meeting starts at noon",
    "Thank you for the lovely dinner",
    "My suitcase has not arrived",
    "How much does this cost",
    "Please close the window",
    "We are looking for a pharmacy",
)
_TEXT = pick(*_SENTENCES)
_WORDS = pick(
    "serendipity", "ephemeral", "resilient", "meticulous", "ubiquitous", "candid", "lucid"
)


@DOMAIN.register(
    asks=[
        'Translate "{text}" into {target_language}.',
        'How do you say "{text}" in {target_language}?',
        'Translate "{text}" from {source_language} to {target_language}.',
    ],
    then=["then translate it into {target_language}", "and then translate it to {target_language}"],
    say='In {target_language}: "{translation}".',
    links={"text": "detect_language.text", "source_language": "detect_language.language"},
    values={"text": _TEXT},
)
@tool(estimated_latency=0.5)
def translate_text(
    text: str, target_language: str, source_language: str | None = None
) -> dict[str, Any]:
    """Translate a text into another language.

    Args:
        text: The text to translate.
        target_language: The language to translate into, e.g. "Spanish".
        source_language: The text's language (detected when left out).
    """
    f = Fake("translate_text", text, target_language)
    words = [w[::-1].lower() for w in text.split()]
    return {
        "target_language": target_language,
        "translation": " ".join(f.sample(words, len(words))),
    }


@DOMAIN.register(
    asks=['What language is "{text}" written in?', 'Detect the language of "{text}".'],
    say='"{text}" is in {language} (confidence {confidence}).',
    values={"text": _TEXT},
)
@tool(estimated_latency=0.15)
def detect_language(text: str) -> dict[str, Any]:
    """Detect the language of a text.

    Args:
        text: The text.
    """
    f = Fake("detect_language", text)
    return {"text": text, "language": f.pick(LANGUAGES), "confidence": f.num(0.6, 0.99, 2)}


@DOMAIN.register(
    asks=[
        'What does "{word}" mean?',
        "Define the word {word}.",
        "Give me the definition of {word}.",
    ],
    say="{word} ({part_of_speech}): {definition}.",
    values={"word": _WORDS},
)
@tool(estimated_latency=0.2)
def define_word(word: str) -> dict[str, Any]:
    """Look up the definition of an English word.

    Args:
        word: The word.
    """
    f = Fake("define_word", word)
    definition = f.pick(
        (
            "lasting a very short time",
            "found everywhere",
            "clear and easy to follow",
            "showing great attention to detail",
            "able to recover quickly",
        )
    )
    return {"word": word, "part_of_speech": f.pick(("adjective", "noun")), "definition": definition}


@DOMAIN.register(
    asks=["Give me {limit} synonyms for {word}.", "What are some other words for {word}?"],
    say="Synonyms for {word}: {synonyms}.",
    values={"word": _WORDS, "limit": ints(2, 5)},
)
@tool(estimated_latency=0.15)
def find_synonyms(word: str, limit: int = 3) -> dict[str, Any]:
    """Find synonyms of a word.

    Args:
        word: The word.
        limit: How many synonyms.
    """
    f = Fake("find_synonyms", word)
    pool = (
        "brief",
        "fleeting",
        "tough",
        "careful",
        "common",
        "clear",
        "honest",
        "bright",
        "sturdy",
    )
    return {"word": word, "synonyms": f.sample(pool, limit)}


@DOMAIN.register(
    asks=['Check the grammar of "{text}".', 'Is "{text}" grammatically correct?'],
    say='Grammar check of "{text}": {issues} issues found.',
    values={"text": _TEXT},
)
@tool(estimated_latency=0.35)
def check_grammar(text: str) -> dict[str, Any]:
    """Check a sentence for grammar mistakes.

    Args:
        text: The text to check.
    """
    return {"text": text, "issues": Fake("check_grammar", text).int(0, 3)}


@DOMAIN.register(
    asks=[
        'Write "{text}" in {script} script.',
        'Transliterate "{text}" into the {script} alphabet.',
    ],
    say='"{text}" in {script} script: {result}.',
    values={"text": pick("Moskva", "Athina", "Kyiv", "Tbilisi", "Sofia", "Beograd")},
)
@tool(estimated_latency=0.1)
def transliterate(
    text: str, script: Literal["latin", "cyrillic", "greek", "arabic"]
) -> dict[str, Any]:
    """Transliterate a text into another script.

    Args:
        text: The text.
        script: The target script.
    """
    return {
        "text": text,
        "script": script,
        "result": Fake("transliterate", text, script).code(n=len(text)),
    }


@DOMAIN.register(
    asks=['How many syllables does "{word}" have?', "Count the syllables in {word}."],
    say='"{word}" has {syllables} syllables.',
    values={"word": _WORDS},
)
@tool(estimated_latency=0.02)
def count_syllables(word: str) -> dict[str, Any]:
    """Count the syllables of an English word.

    Args:
        word: The word.
    """
    vowels = sum(
        1 for a, b in zip(" " + word, word, strict=False) if b in "aeiouy" and a not in "aeiouy"
    )
    return {"word": word, "syllables": max(1, vowels)}


@DOMAIN.register(
    asks=[
        "Summarise the document at {url} in {max_sentences} sentences.",
        "Give me a short summary of {url}.",
    ],
    say="Summary of {url}: {summary}.",
    values={
        "url": pick(
            "https://example.com/report",
            "https://docs.example.org/spec",
            "https://news.example.net/story",
        ),
        "max_sentences": ints(1, 4),
    },
)
@tool(estimated_latency=1.3)
def summarize_document(url: str, max_sentences: int = 3) -> dict[str, Any]:
    """Summarise the text of a web document.

    Args:
        url: The document's address.
        max_sentences: The longest summary, in sentences.
    """
    summary = Fake("summarize_document", url).pick(
        (
            "sales grew in every region",
            "the new spec drops the legacy format",
            "the bridge reopens in spring",
        )
    )
    return {"url": url, "summary": summary}
