"""Translation: English number words -> French, with a GRU encoder-decoder (Cho et al. 2014).

Data: ``grukit.datasets.numbers`` (num2words, numbers below 100,000; the test numbers never
appear in training). Model, as in Cho et al. 2014 ("Learning phrase representations using
RNN encoder-decoder", the paper that introduced the GRU), without attention:

    encoder:  h_t = GRU(e(x_t), h_{t-1});            c = h_T (the summary of the sentence)
    decoder:  s_0 = tanh(W_c c)
              s_t = GRU([e(y_{t-1}); c], s_{t-1})   (the summary feeds every step)
              p(y_t | y_<t, x) = softmax(W_o [s_t; e(y_{t-1}); c])

Decoding: greedy, or beam search (``beam`` hypotheses, log-probabilities normalised by
length). Metrics on the held-out numbers: exact match of the whole French string and the
character error rate (Levenshtein distance / reference length). Baseline: a word-by-word
dictionary learned from the same training pairs (``DictionaryBaseline``): each English
token replaced by one French token or dropped, in English word order.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ...nn import GRU
from ..datasets.numbers import covering_numbers, detokenize, english, french, number_pairs, tokenize
from .catalog import CATALOG
from .model_files import load_weights, model_file
from .options import Options
from .task import Task
from .training import fit

DEFAULTS = CATALOG["translate"]  # epochs, hidden, batch size, learning rate

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
MAX_OUTPUT = 40  # tokens; the longest French number below 100,000 has 20


def as_english(text: str) -> str:
    """Digits ("412") as num2words' English words; anything else unchanged."""
    return english(int(text)) if text.strip().isdigit() else text


def build_vocab(sentences: Sequence[str], specials: Sequence[str]) -> Dict[str, int]:
    words = sorted({w for s in sentences for w in tokenize(s)})
    return {w: i for i, w in enumerate(list(specials) + words)}


def encode_batch(sentences: Sequence[str], vocab: Dict[str, int], bos: bool = False, eos: bool = False):
    """Token ids [B, T] (padded with 0) and lengths [B]; unknown words -> <unk> when the vocabulary has it."""
    rows = []
    for s in sentences:
        ids = [vocab[w] if w in vocab else vocab.get(UNK, -1) for w in tokenize(s)]
        rows.append(([vocab[BOS]] if bos else []) + ids + ([vocab[EOS]] if eos else []))
    ids = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids, torch.tensor([len(r) for r in rows])


class EncoderDecoder(nn.Module):
    """Cho et al. 2014's RNN encoder-decoder with GRUs (equations in the module docstring)."""

    def __init__(
        self,
        source_words: int,
        target_words: int,
        hidden: int = 128,
        layers: int = 1,
        reset_after: bool = True,
        embed: int = 64,
    ):
        super().__init__()
        self.source_embedding = nn.Embedding(source_words, embed, padding_idx=0)
        self.target_embedding = nn.Embedding(target_words, embed, padding_idx=0)
        self.encoder = GRU(embed, hidden, num_layers=layers, batch_first=True, reset_after=reset_after)
        self.init_state = nn.Linear(hidden, hidden * layers)
        self.decoder = GRU(embed + hidden, hidden, num_layers=layers, batch_first=True, reset_after=reset_after)
        self.output = nn.Linear(hidden + embed + hidden, target_words)
        self.layers, self.hidden = layers, hidden

    def encode(self, source: torch.Tensor, lengths: torch.Tensor):
        """source [B, S], lengths [B] -> (summary c [B, H], first decoder state s_0 [layers, B, H])."""
        packed = pack_padded_sequence(self.source_embedding(source), lengths, batch_first=True, enforce_sorted=False)
        _, h = self.encoder(packed)
        c = h[-1]
        s0 = torch.tanh(self.init_state(c)).view(-1, self.layers, self.hidden).transpose(0, 1).contiguous()
        return c, s0

    def decode(self, previous: torch.Tensor, c: torch.Tensor, state: torch.Tensor):
        """previous tokens [B, T], summary [B, H], state [layers, B, H] -> (logits [B, T, V], new state)."""
        e = self.target_embedding(previous)
        c_steps = c[:, None, :].expand(-1, previous.shape[1], -1)
        s, state = self.decoder(torch.cat([e, c_steps], -1), state)
        return self.output(torch.cat([s, e, c_steps], -1)), state

    def forward(self, source, source_lengths, previous):
        c, s0 = self.encode(source, source_lengths)
        return self.decode(previous, c, s0)[0]


class Translator:
    """A trained model with its vocabularies: greedy and beam decoding of English number words."""

    def __init__(self, model: EncoderDecoder, source_vocab: Dict[str, int], target_vocab: Dict[str, int]):
        self.model, self.source_vocab, self.target_vocab = model.eval(), source_vocab, target_vocab
        self.target_words = {i: w for w, i in target_vocab.items()}

    def check(self, sentences: Sequence[str]) -> None:
        for s in sentences:
            unknown = [w for w in tokenize(s) if w not in self.source_vocab]
            if not tokenize(s) or unknown:
                raise ValueError(
                    f"cannot translate {s!r}: "
                    + (f"unknown words {unknown}" if unknown else "no words")
                    + "; write English number words as num2words spells them, e.g. "
                    "'four hundred and twelve', or digits"
                )

    def _words(self, ids: Sequence[int]) -> str:
        return detokenize([self.target_words[i] for i in ids])

    @torch.no_grad()
    def greedy(self, sentences: Sequence[str]) -> List[str]:
        self.check(sentences)
        source, lengths = encode_batch(sentences, self.source_vocab)
        c, state = self.model.encode(source, lengths)
        token = torch.full((len(sentences), 1), self.target_vocab[BOS])
        out, done = [], torch.zeros(len(sentences), dtype=torch.bool)
        for _ in range(MAX_OUTPUT):
            logits, state = self.model.decode(token, c, state)
            token = logits[:, -1].argmax(-1, keepdim=True)
            out.append(token[:, 0])
            done |= token[:, 0] == self.target_vocab[EOS]
            if done.all():
                break
        ids = torch.stack(out, 1).tolist()
        eos = self.target_vocab[EOS]
        return [self._words(row[: row.index(eos)] if eos in row else row) for row in ids]

    @torch.no_grad()
    def beam(self, sentence: str, width: int = 4) -> List[tuple]:
        """The ``width`` best translations of one sentence: [(text, mean log-probability per token), ...]."""
        if width < 1:
            raise ValueError(f"beam width must be at least 1, got {width}")
        self.check([sentence])
        source, lengths = encode_batch([sentence], self.source_vocab)
        c, state = self.model.encode(source, lengths)
        eos = self.target_vocab[EOS]
        live = [([self.target_vocab[BOS]], 0.0)]  # (tokens, summed log-probability)
        finished = []
        for _ in range(MAX_OUTPUT):
            previous = torch.tensor([[tokens[-1]] for tokens, _ in live])
            logits, new_state = self.model.decode(previous, c.expand(len(live), -1), state)
            logp = torch.log_softmax(logits[:, -1], -1)
            scores = torch.tensor([s for _, s in live])[:, None] + logp
            best = scores.view(-1).topk(min(width, scores.numel()))
            candidates, rows = [], []
            for score, flat in zip(best.values.tolist(), best.indices.tolist()):
                row, token = divmod(flat, logp.shape[1])
                tokens = live[row][0] + [token]
                if token == eos:
                    finished.append((tokens[1:-1], score))
                else:
                    candidates.append((tokens, score))
                    rows.append(row)
            # per generated token: a finished (words, score) generated its words and </s>;
            # a live [<s>, words...] generated its words
            if (
                not candidates
                or len(finished) >= width
                and max(s / (len(t) + 1) for t, s in finished) >= max(s / (len(t) - 1) for t, s in candidates)
            ):
                break
            live, state = candidates, new_state[:, rows]
        finished = finished or [(t[1:], s) for t, s in live]
        ranked = sorted(finished, key=lambda ts: ts[1] / (len(ts[0]) + 1), reverse=True)[:width]
        return [(self._words(t), s / (len(t) + 1)) for t, s in ranked]

    def translate(self, sentences: Sequence[str], beam: int = 1) -> List[str]:
        sentences = [as_english(s) for s in sentences]
        if beam <= 1:
            return self.greedy(sentences)
        return [self.beam(s, beam)[0][0] for s in sentences]


class DictionaryBaseline:
    """Word-by-word translation with a dictionary learned from the training pairs.

    Each English token maps to one French token or to nothing ("and" has no French word).
    The candidates are the 3 French tokens with the highest Dice coefficient of
    co-occurrence. Starting from an empty dictionary, ``passes`` passes over the English
    tokens, the highest Dice first, keep for each the candidate (or nothing) with the smallest
    word edit distance to the references on ``fit_pairs`` training pairs (coordinate
    descent). Output in English word order.
    """

    def __init__(self, pairs: Sequence[tuple], fit_pairs: int = 1000, passes: int = 2):
        en_count, fr_count, both = Counter(), Counter(), Counter()
        for _, en, fr in pairs:
            e, f = set(tokenize(en)), set(tokenize(fr))
            en_count.update(e)
            fr_count.update(f)
            both.update((a, b) for a in e for b in f)

        def dice(e, f):
            return 2 * both[e, f] / (en_count[e] + fr_count[f])

        candidates = {e: sorted(fr_count, key=lambda f: -dice(e, f))[:3] for e in en_count}
        # the most certain words first: "thousand" settles on "mille" before "," could take it
        order = sorted(en_count, key=lambda e: -dice(e, candidates[e][0]))
        self.dictionary = {e: None for e in candidates}
        sample = [(tokenize(en), tokenize(fr)) for _, en, fr in pairs[:fit_pairs]]

        def cost():
            return sum(levenshtein(self._words(en), fr) for en, fr in sample)

        for _ in range(passes):
            for e in order:
                options = [None] + candidates[e]
                costs = []
                for option in options:
                    self.dictionary[e] = option
                    costs.append(cost())
                self.dictionary[e] = options[costs.index(min(costs))]
        self.dictionary = {e: f for e, f in self.dictionary.items() if f is not None}

    def _words(self, tokens: Sequence[str]) -> List[str]:
        return [self.dictionary[w] for w in tokens if self.dictionary.get(w) is not None]

    def translate(self, sentence: str) -> str:
        return detokenize(self._words(tokenize(sentence)))


def levenshtein(a: Sequence, b: Sequence) -> int:
    """Edit distance between two strings (or token lists)."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def scores(predictions: Sequence[str], references: Sequence[str]) -> Dict[str, float]:
    """Exact-match accuracy and character error rate (total edit distance / total reference characters)."""
    exact = sum(p == r for p, r in zip(predictions, references)) / len(references)
    cer = sum(levenshtein(p, r) for p, r in zip(predictions, references)) / sum(len(r) for r in references)
    return {"exact": exact, "cer": cer}


def train(options: Options) -> Dict:
    torch.manual_seed(options.seed)
    data = number_pairs(train=options.limit or 20_000)
    # the vocabularies hold every word of every number the model can be asked (not only the
    # training split's: with --limit 300 "zero" may be missing from it)
    every = covering_numbers(data.high)
    source_vocab = build_vocab([en for _, en, _ in data.train] + [english(n) for n in every], [PAD, UNK])
    target_vocab = build_vocab([fr for _, _, fr in data.train] + [french(n) for n in every], [PAD, BOS, EOS, UNK])
    hidden = options.hidden or DEFAULTS.hidden
    model = EncoderDecoder(len(source_vocab), len(target_vocab), hidden, options.layers, options.reset_after)
    source, source_lengths = encode_batch([en for _, en, _ in data.train], source_vocab)
    target, _ = encode_batch([fr for _, _, fr in data.train], target_vocab, bos=True, eos=True)
    translator = Translator(model, source_vocab, target_vocab)

    def loss_fn(m, src, src_len, tgt):
        logits = m(src, src_len, tgt[:, :-1])
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt[:, 1:].reshape(-1), ignore_index=0)

    def val_exact():
        predictions = translator.greedy([en for _, en, _ in data.val])
        return scores(predictions, [fr for _, _, fr in data.val])["exact"]

    result = fit(
        model,
        (source, source_lengths, target),
        loss_fn,
        val_exact,
        options.epochs or DEFAULTS.epochs,
        options.lr or DEFAULTS.lr,
        options.batch_size or DEFAULTS.batch_size,
        options,
        higher_is_better=True,
    )
    english_test, references = [en for _, en, _ in data.test], [fr for _, _, fr in data.test]
    greedy = scores(translator.greedy(english_test), references)
    beam = scores([translator.beam(s, 4)[0][0] for s in english_test], references)
    baseline = DictionaryBaseline(data.train)
    dictionary = scores([baseline.translate(s) for s in english_test], references)
    report = {
        "task": "translate",
        "metric": "exact-match accuracy, English -> French number words (held-out numbers)",
        "model": beam["exact"],
        "baselines": {"word-by-word dictionary": dictionary["exact"]},
        "also": {
            "exact match, greedy decoding": {"grukit GRU": greedy["exact"]},
            "character error rate (lower is better)": {
                "grukit GRU, beam 4": beam["cer"],
                "grukit GRU, greedy": greedy["cer"],
                "word-by-word dictionary": dictionary["cer"],
            },
        },
        "split": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        **result,
    }
    report["model_file"] = model_file(
        "translate",
        options,
        model,
        source_vocab=source_vocab,
        target_vocab=target_vocab,
        config={"hidden": hidden, "layers": options.layers, "reset_after": options.reset_after},
    )
    return report


def load_translator(saved: Dict) -> Translator:
    c = saved["config"]
    model = EncoderDecoder(
        len(saved["source_vocab"]), len(saved["target_vocab"]), c["hidden"], c["layers"], c["reset_after"]
    )
    return Translator(load_weights(model, saved), saved["source_vocab"], saved["target_vocab"])


def load_model(saved: Dict) -> EncoderDecoder:
    return load_translator(saved).model


def predict(saved: Dict, sentences: Sequence[str], beam: int = 4) -> List[str]:
    return load_translator(saved).translate(list(sentences), beam)


class TranslateTask(Task):
    name = "translate"
    how_to_use = "it translates: use `grukit translate --model PATH TEXT ...`"

    def translate(self, saved: Dict, texts: Sequence[str], beam: int, show: int) -> List[str]:
        translator = load_translator(saved)
        lines = []
        for text in texts:
            english = as_english(text)
            if beam > 1:
                for i, (french, score) in enumerate(translator.beam(english, beam)[:show]):
                    line = f"{english}  ->  {french}" if i == 0 else f"{'':>{len(english)}}      {french}"
                    lines.append(line + (f"   (log p per token {score:.3f})" if show > 1 else " "))
            else:
                lines.append(f"{english}  ->  {translator.greedy([english])[0]}")
        return lines


TASK = TranslateTask(train, load_model)
