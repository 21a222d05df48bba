#!/usr/bin/env python3
"""TextSGC's cleaning of a corpus, as its remove_words.py does it.

An independent oracle for `tokenize.rules = "textsgc"`: TextSGC's
`utils.clean_str` (its regular expressions, verbatim), NLTK's English stop
words removed, then only the words counted at least 5 times kept (its
`cutoff = count.index(4)` over the words by falling count). Writes the
cleaned documents joined by newlines, as TextSGC's `<dataset>.clean.txt`,
so `textgcn export-clean` on a textsgc config must print the same bytes.

  oracle_textsgc_clean.py CORPUS STOPWORDS OUT
"""
import re
import sys
from collections import Counter


def clean_str(string):
    string = re.sub(r"[?|$|.|!]", r"", string)
    string = re.sub(r"[^a-zA-Z0-9 ]", r"", string)
    string = re.sub(r"\'s", " \'s", string)
    string = re.sub(r"\'ve", " \'ve", string)
    string = re.sub(r"n\'t", " n\'t", string)
    string = re.sub(r"\'re", " \'re", string)
    string = re.sub(r"\'d", " \'d", string)
    string = re.sub(r"\'ll", " \'ll", string)
    string = re.sub(r",", " , ", string)
    string = re.sub(r"!", " ! ", string)
    string = re.sub(r"\(", " \( ", string)
    string = re.sub(r"\)", " \) ", string)
    string = re.sub(r"\?", " \? ", string)
    string = re.sub(r"\s{2,}", " ", string)
    return string.strip().lower()


def main():
    corpus, stopwords, out = sys.argv[1:4]
    with open(stopwords, encoding="utf-8") as f:
        stop = set(f.read().split())
    with open(corpus, "rb") as f:
        docs = [line.strip().decode("latin1") for line in f.readlines()]
    words = [[w for w in clean_str(d).split() if w not in stop] for d in docs]
    freq = Counter()
    for ws in words:
        freq.update(ws)
    vocab, count = zip(*freq.most_common())
    keep = set(vocab[: count.index(4)])
    with open(out, "w") as f:
        f.write("\n".join(" ".join(w for w in ws if w in keep) for ws in words))


if __name__ == "__main__":
    main()
