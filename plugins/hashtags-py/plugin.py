"""Weir plugin `hashtags-py`: the top hashtags (and, with `words = true`,
words) of a stream of posts per sliding window, in Python.

Config (the stage's `config` table):
- `window` (default `"60s"`), `slide` (default `"10s"`), `time`
  (`"processing"`, the default, or `"event"`), `allowed_lateness`;
- `top` (default 10): how many to emit per window;
- `words` (default false): count the words of `text` too, without stop
  words, links, mentions and hashtags;
- `stop_words`: more words to leave out.

A post is a JSON object; hashtags come from `entities.hashtags[].tag` (or
`.text`, the older API's name), else from `#words` in `text`, lowercased.
Each closed window writes
`{"window_start":MS,"window_end":MS,"posts":N,"counts":{"rust":12,"kafka":9,...}}`
(and `"words":{...}`), most frequent first, ties by name: the shape the
dashboard sink draws as bars.
"""

import json
import re

import weir_plugin
from weir_plugin import Aggregate, Settings, Windowed, Windowing
from weir_plugin.window import WINDOW_KEYS

HASHTAG = re.compile(r"#(\w+)")
WORD = re.compile(r"[^\W\d_][\w'’]*")
LINK_OR_MENTION = re.compile(r"https?://\S+|@\w+|#\w+")
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over
    own rt same she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself yourselves""".split()
)


def hashtags(post):
    """The post's hashtags, lowercased."""
    tags = (post.get("entities") or {}).get("hashtags")
    if isinstance(tags, list) and tags:
        found = [t.get("tag") or t.get("text") for t in tags if isinstance(t, dict)]
        return [t.lower() for t in found if isinstance(t, str) and t]
    return [t.lower() for t in HASHTAG.findall(post.get("text") or "")]


class TopTags(Aggregate):
    """Counts hashtags (and words) per window."""

    def init(self, config):
        s = Settings(config, ("top", "words", "stop_words") + WINDOW_KEYS)
        self.top = s.integer("top", 10)
        if self.top < 1:
            raise ValueError("`top` must be at least 1")
        self.words = s.boolean("words", False)
        self.stop = STOP_WORDS | {w.lower() for w in s.strings("stop_words", [])}
        if s.raw("slide") is None:
            s.values["slide"] = "10s"
        return Windowing.from_settings(s, default_window_ms=60_000)

    def read(self, record):
        try:
            post = json.loads(record.event.value)
        except ValueError as e:
            raise ValueError(f"invalid JSON: {e}") from None
        if not isinstance(post, dict):
            raise ValueError("a post must be a JSON object")
        words = []
        if self.words:
            text = LINK_OR_MENTION.sub(" ", post.get("text") or "")
            words = [w.lower() for w in WORD.findall(text)]
            words = [w for w in words if w not in self.stop and len(w) > 1]
        return hashtags(post), words

    def new_acc(self):
        return {"posts": 0, "tags": {}, "words": {}}

    def add(self, acc, item):
        tags, words = item
        acc["posts"] += 1
        for t in set(tags):
            acc["tags"][t] = acc["tags"].get(t, 0) + 1
        for w in words:
            acc["words"][w] = acc["words"].get(w, 0) + 1
        return acc

    def _top(self, counts):
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: self.top])

    def emit(self, window, out):
        doc = {
            "window_start": window.start,
            "window_end": window.end,
            "posts": window.acc["posts"],
            "counts": self._top(window.acc["tags"]),
        }
        if self.words:
            doc["words"] = self._top(window.acc["words"])
        out.emit(window.end, json.dumps(doc, separators=(",", ":"), ensure_ascii=False))


@weir_plugin.export
class Hashtags(Windowed):
    """The plugin: top hashtags per window."""

    aggregate = TopTags
