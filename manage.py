#!/usr/bin/env python
"""labeler's command line: ``python manage.py --help``."""

from labeler.cli import main

if __name__ == "__main__":
    main()
