"""Make the code tasks: small functions the project wrote, each with tests, posed as fill-in-the-middle.

    python data/make_code_tasks.py            # writes data/code_tasks_test.jsonl; checks every reference

Each task is one short function with one line cut out (the line marked ``# <hole>`` below; the
mark is removed), in the format of the ``stdlib_functions`` FIM set: ``prefix`` ends with the
line's indentation, ``middle`` is the line without it, ``suffix`` starts with the newline.
``tests`` are ``assert`` lines. So a filled middle can be scored three ways (lesson 10): exact
match with the reference line, does the file parse (``gemma_kit.evaluate.parses``), and do the
tests pass (``gemma_kit.evaluate.run_tests``, in a subprocess) - the basis of pass@k.

The script refuses to write the file unless every reference passes its tests and every
task's tests *fail* with the hole left empty (``pass``), so a test cannot pass by accident.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))                   # the clone's gemma_kit
from gemma_kit.evaluate import run_tests  # noqa: E402

HOLE = "  # <hole>"
TASKS = [  # (function with one line marked # <hole>, tests)
    ("def add(a, b):\n    return a + b  # <hole>\n", "assert add(2, 3) == 5\nassert add(-1, 1) == 0"),
    ("def square(x):\n    return x * x  # <hole>\n", "assert square(4) == 16\nassert square(-3) == 9"),
    ("def is_even(n):\n    return n % 2 == 0  # <hole>\n", "assert is_even(4)\nassert not is_even(7)"),
    ("def maximum(values):\n    best = values[0]\n    for v in values[1:]:\n        if v > best:  # <hole>\n"
     "            best = v\n    return best\n", "assert maximum([3, 9, 2]) == 9\nassert maximum([-5, -2]) == -2"),
    ("def total(values):\n    result = 0\n    for v in values:\n        result += v  # <hole>\n    return result\n",
     "assert total([1, 2, 3]) == 6\nassert total([]) == 0"),
    ("def count_vowels(text):\n    return sum(1 for c in text.lower() if c in 'aeiou')  # <hole>\n",
     "assert count_vowels('Banana') == 3\nassert count_vowels('xyz') == 0"),
    ("def reverse_string(s):\n    return s[::-1]  # <hole>\n", "assert reverse_string('abc') == 'cba'\nassert reverse_string('') == ''"),
    ("def is_palindrome(s):\n    cleaned = s.lower()\n    return cleaned == cleaned[::-1]  # <hole>\n",
     "assert is_palindrome('Level')\nassert not is_palindrome('hello')"),
    ("def factorial(n):\n    if n <= 1:\n        return 1\n    return n * factorial(n - 1)  # <hole>\n",
     "assert factorial(5) == 120\nassert factorial(0) == 1"),
    ("def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b  # <hole>\n    return a\n",
     "assert fibonacci(10) == 55\nassert fibonacci(1) == 1"),
    ("def mean(values):\n    return sum(values) / len(values)  # <hole>\n", "assert mean([1, 2, 3]) == 2\nassert mean([4]) == 4"),
    ("def clamp(x, low, high):\n    return max(low, min(x, high))  # <hole>\n",
     "assert clamp(5, 0, 3) == 3\nassert clamp(-1, 0, 3) == 0\nassert clamp(2, 0, 3) == 2"),
    ("def first_word(text):\n    words = text.split()\n    return words[0] if words else ''  # <hole>\n",
     "assert first_word('hello world') == 'hello'\nassert first_word('') == ''"),
    ("def word_count(text):\n    return len(text.split())  # <hole>\n", "assert word_count('a b  c') == 3\nassert word_count('') == 0"),
    ("def unique(values):\n    seen = []\n    for v in values:\n        if v not in seen:\n            seen.append(v)  # <hole>\n"
     "    return seen\n", "assert unique([1, 2, 1, 3, 2]) == [1, 2, 3]"),
    ("def flatten(lists):\n    result = []\n    for inner in lists:\n        result.extend(inner)  # <hole>\n    return result\n",
     "assert flatten([[1, 2], [3], []]) == [1, 2, 3]"),
    ("def char_frequency(text):\n    counts = {}\n    for c in text:\n        counts[c] = counts.get(c, 0) + 1  # <hole>\n"
     "    return counts\n", "assert char_frequency('abca') == {'a': 2, 'b': 1, 'c': 1}"),
    ("def invert(mapping):\n    return {value: key for key, value in mapping.items()}  # <hole>\n",
     "assert invert({'a': 1, 'b': 2}) == {1: 'a', 2: 'b'}"),
    ("def is_prime(n):\n    if n < 2:\n        return False\n    for d in range(2, int(n ** 0.5) + 1):\n"
     "        if n % d == 0:  # <hole>\n            return False\n    return True\n",
     "assert is_prime(13)\nassert not is_prime(15)\nassert not is_prime(1)"),
    ("def gcd(a, b):\n    while b:\n        a, b = b, a % b  # <hole>\n    return a\n", "assert gcd(12, 18) == 6\nassert gcd(7, 5) == 1"),
    ("def celsius_to_fahrenheit(c):\n    return c * 9 / 5 + 32  # <hole>\n",
     "assert celsius_to_fahrenheit(100) == 212\nassert celsius_to_fahrenheit(0) == 32"),
    ("def last(values):\n    return values[-1]  # <hole>\n", "assert last([1, 2, 3]) == 3"),
    ("def evens(values):\n    return [v for v in values if v % 2 == 0]  # <hole>\n", "assert evens([1, 2, 3, 4]) == [2, 4]"),
    ("def squares(n):\n    return [i * i for i in range(n)]  # <hole>\n", "assert squares(4) == [0, 1, 4, 9]"),
    ("def capitalize_words(text):\n    return ' '.join(w.capitalize() for w in text.split())  # <hole>\n",
     "assert capitalize_words('hello big world') == 'Hello Big World'"),
    ("def count_if(values, predicate):\n    count = 0\n    for v in values:\n        if predicate(v):\n"
     "            count += 1  # <hole>\n    return count\n", "assert count_if([1, 5, 8], lambda v: v > 3) == 2"),
    ("def dot(a, b):\n    return sum(x * y for x, y in zip(a, b))  # <hole>\n", "assert dot([1, 2, 3], [4, 5, 6]) == 32"),
    ("def average_length(words):\n    if not words:\n        return 0.0  # <hole>\n    return sum(len(w) for w in words) / len(words)\n",
     "assert average_length([]) == 0.0\nassert average_length(['ab', 'abcd']) == 3"),
    ("def swap_pairs(pairs):\n    return [(b, a) for a, b in pairs]  # <hole>\n", "assert swap_pairs([(1, 2), (3, 4)]) == [(2, 1), (4, 3)]"),
    ("def chunks(values, size):\n    return [values[i:i + size] for i in range(0, len(values), size)]  # <hole>\n",
     "assert chunks([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]"),
    ("def running_sum(values):\n    result, total = [], 0\n    for v in values:\n        total += v\n"
     "        result.append(total)  # <hole>\n    return result\n", "assert running_sum([1, 2, 3]) == [1, 3, 6]"),
    ("def argmax(values):\n    best = 0\n    for i in range(1, len(values)):\n        if values[i] > values[best]:\n"
     "            best = i  # <hole>\n    return best\n", "assert argmax([3, 7, 2]) == 1\nassert argmax([5]) == 0"),
    ("def starts_with_vowel(word):\n    return word[:1].lower() in ('a', 'e', 'i', 'o', 'u')  # <hole>\n",
     "assert starts_with_vowel('Apple')\nassert not starts_with_vowel('pear')\nassert not starts_with_vowel('')"),
    ("def digits_sum(n):\n    return sum(int(d) for d in str(abs(n)))  # <hole>\n", "assert digits_sum(1234) == 10\nassert digits_sum(-45) == 9"),
    ("def power_of_two(n):\n    return n > 0 and n & (n - 1) == 0  # <hole>\n",
     "assert power_of_two(8)\nassert not power_of_two(6)\nassert not power_of_two(0)"),
    ("def merge_dicts(a, b):\n    result = dict(a)\n    result.update(b)  # <hole>\n    return result\n",
     "assert merge_dicts({'x': 1}, {'x': 2, 'y': 3}) == {'x': 2, 'y': 3}"),
    ("def longest(words):\n    return max(words, key=len)  # <hole>\n", "assert longest(['a', 'abc', 'ab']) == 'abc'"),
    ("def remove_none(values):\n    return [v for v in values if v is not None]  # <hole>\n",
     "assert remove_none([1, None, 0, None]) == [1, 0]"),
    ("def repeat(text, times):\n    return text * times  # <hole>\n", "assert repeat('ab', 3) == 'ababab'"),
    ("def transpose(matrix):\n    return [list(row) for row in zip(*matrix)]  # <hole>\n",
     "assert transpose([[1, 2], [3, 4], [5, 6]]) == [[1, 3, 5], [2, 4, 6]]"),
    ("def index_of(values, target):\n    for i, v in enumerate(values):\n        if v == target:\n            return i  # <hole>\n"
     "    return -1\n", "assert index_of([4, 5, 6], 6) == 2\nassert index_of([4], 9) == -1"),
    ("def pairwise_sums(values):\n    return [a + b for a, b in zip(values, values[1:])]  # <hole>\n",
     "assert pairwise_sums([1, 2, 4]) == [3, 6]"),
    ("def to_binary(n):\n    return bin(n)[2:]  # <hole>\n", "assert to_binary(5) == '101'\nassert to_binary(0) == '0'"),
    ("def safe_divide(a, b):\n    if b == 0:\n        return None  # <hole>\n    return a / b\n",
     "assert safe_divide(6, 3) == 2\nassert safe_divide(1, 0) is None"),
    ("def group_by_length(words):\n    groups = {}\n    for w in words:\n        groups.setdefault(len(w), []).append(w)  # <hole>\n"
     "    return groups\n", "assert group_by_length(['a', 'bc', 'd']) == {1: ['a', 'd'], 2: ['bc']}"),
    ("def min_max(values):\n    return min(values), max(values)  # <hole>\n", "assert min_max([3, 1, 2]) == (1, 3)"),
    ("def strip_lines(text):\n    return [line.strip() for line in text.splitlines()]  # <hole>\n",
     "assert strip_lines(' a \\n b') == ['a', 'b']"),
    ("def histogram(values):\n    counts = {}\n    for v in values:\n        counts[v] = counts.get(v, 0) + 1\n"
     "    return sorted(counts.items())  # <hole>\n", "assert histogram([2, 1, 2]) == [(1, 1), (2, 2)]"),
]


def cut(source):
    """(prefix, middle, suffix) of a function with one line marked ``# <hole>``."""
    lines = source.splitlines(keepends=True)
    marked = [i for i, line in enumerate(lines) if line.rstrip("\n").endswith(HOLE)]
    if len(marked) != 1:
        raise ValueError(f"task needs exactly one line marked {HOLE.strip()!r}:\n{source}")
    i = marked[0]
    line = lines[i].rstrip("\n")[:-len(HOLE)]
    indent = line[:len(line) - len(line.lstrip())]
    prefix = "".join(lines[:i]) + indent
    suffix = "\n" + "".join(lines[i + 1:])
    return prefix, line.strip(), suffix


def main():
    records = []
    for number, (source, tests) in enumerate(TASKS):
        prefix, middle, suffix = cut(source)
        name = source.split("(")[0].removeprefix("def ")
        good = run_tests(prefix + middle + suffix, tests)
        empty = run_tests(prefix + "pass" + suffix, tests)
        if not good.passed:
            raise SystemExit(f"task {name}: the reference fails its tests ({good.status}): {good.detail}")
        if empty.passed:
            raise SystemExit(f"task {name}: the tests pass with the hole left empty; make them stricter")
        records.append({"id": f"code_task_{number:02d}", "entry_point": name, "prefix": prefix, "middle": middle,
                        "suffix": suffix, "tests": tests})
    path = os.path.join(HERE, "code_tasks_test.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    print(f"{len(records)} tasks, every reference passes and every empty hole fails -> {path}")


if __name__ == "__main__":
    main()
