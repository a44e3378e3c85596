"""`python -m scraper` runs the `scrape` command."""

from scraper.cli import run

if __name__ == "__main__":
    run()
