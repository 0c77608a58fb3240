"""Reading rating files: MovieLens, Netflix Prize, delimited text, Parquet/Arrow, binary cache.

Every loader returns a :class:`mfkit.Ratings` with the original user and item ids kept
(``user_ids`` / ``item_ids``, sorted, mapped to contiguous indices) and, when the file has
them, the timestamps (``timestamps``, int64 seconds since 1970-01-01 UTC; Netflix dates are
taken at midnight UTC).

================================  =====================================================
format                            loader
================================  =====================================================
``movielens-100k`` (``u.data``)   :func:`load_movielens_100k` (tab: user item rating time)
``movielens-dat`` (1M, 10M)       :func:`load_movielens_dat` (``user::item::rating::time``)
``movielens-csv`` (20M..32M)      :func:`load_movielens_csv` (``userId,movieId,rating,...``)
``netflix``                       :func:`load_netflix` (``combined_data_N.txt``, several
                                  files, a folder, or the ``training_set/mv_*.txt`` layout)
``netflix-pairs``                 :func:`load_netflix_pairs` (``probe.txt``,
                                  ``qualifying.txt``: (user, movie) pairs, not ratings)
``delimited``                     :func:`load_delimited` (any delimiter, columns by
                                  position or header name, comments, string ids)
``parquet`` / ``arrow``           :func:`load_parquet` / :func:`load_arrow` (needs pyarrow)
``cache``                         :meth:`mfkit.Ratings.load` (folder written by
                                  :meth:`mfkit.Ratings.save`)
================================  =====================================================

:func:`load_ratings` picks the format from the file name and its first lines and says what it
chose. Text may be compressed (``.gz``, ``.bz2``, ``.xz``, ``.zip``; recognised by content).

Text is parsed by a compiled tokenizer (``mfkit.io._tokenize``), with no Python object per line.
Plain files are memory-mapped and parsed in windows of up to 512 MiB (compressed input is
decompressed in blocks of 64 MiB); each window is split across threads at line boundaries.
Strictly formatted lines take a fast path; any other line is parsed by the general parser,
which decides every value and every error. Integer ids are kept in int32 columns (a file with
an id beyond int32 is read again with int64 ones) and mapped through a lookup table when
their range allows (``mfkit.data._assemble``); other ids (strings, wide integer ranges) by a sort.
The CSR container is built by a stable counting sort. A file must not change while it is
read: one that shrinks between windows is refused, one cut short inside a window can crash
the process (as with any memory map).

**Values.** A rating is the float32 nearest to the double Python's ``float()`` reads from
its text (``numpy.float32(float(text))``); a date ``YYYY-MM-DD`` must exist in the calendar.

**Bad lines.** A line with the wrong number of fields, a non-numeric id, rating or timestamp,
an impossible date, a rating outside ``rating_scale`` or beyond float32, or (Netflix) a
malformed ``MovieID:`` line is a bad line.
``on_bad_line='error'`` (default) raises :class:`RatingFileError` naming the file, the line
number and the line; ``'skip'`` drops such lines and counts them (pass ``info=LoadInfo()`` to
read the counts); ``'warn'`` does the same and emits one :class:`BadLineWarning` listing the
count and the first bad lines. Blank lines (only whitespace) and comment lines (when a
``comment`` character is given) carry no data and are counted in :class:`LoadInfo`, never
reported. An empty file, or one with no rating in it, is an error.
"""

from mfkit.exceptions import BadLineWarning, RatingFileError
from mfkit.io._arrow import load_arrow, load_parquet
from mfkit.io._cache import load_cache, save_cache
from mfkit.io._common import FORMATS, LoadInfo, NetflixPairs
from mfkit.io._delimited import load_delimited
from mfkit.io._movielens import load_movielens_100k, load_movielens_csv, load_movielens_dat
from mfkit.io._netflix import load_netflix, load_netflix_pairs
from mfkit.io._sniff import load_ratings, sniff_format

__all__ = [
    "FORMATS",
    "BadLineWarning",
    "LoadInfo",
    "NetflixPairs",
    "RatingFileError",
    "load_arrow",
    "load_cache",
    "load_delimited",
    "load_movielens_100k",
    "load_movielens_csv",
    "load_movielens_dat",
    "load_netflix",
    "load_netflix_pairs",
    "load_parquet",
    "load_ratings",
    "save_cache",
    "sniff_format",
]
