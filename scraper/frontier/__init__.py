"""The URL frontier: what is left to fetch, what was seen, and which host may go next.

`Frontier` is the interface the pipeline talks to; `MemoryFrontier` keeps everything in
RAM for throwaway runs and the library; `SQLiteFrontier` keeps it in a file, so that a
crawl survives its process and resumes.
"""

from scraper.frontier.base import Admission, Frontier
from scraper.frontier.memory import MemoryFrontier
from scraper.frontier.sqlite import SQLiteFrontier

__all__ = ["Admission", "Frontier", "MemoryFrontier", "SQLiteFrontier"]
