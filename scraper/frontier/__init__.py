"""The URL frontier: what is left to fetch, what was seen, and which host may go next.

`Frontier` is the interface the pipeline talks to; `MemoryFrontier` keeps everything in
RAM for throwaway runs and the library.
"""

from scraper.frontier.base import Admission, Frontier
from scraper.frontier.memory import MemoryFrontier

__all__ = ["Admission", "Frontier", "MemoryFrontier"]
