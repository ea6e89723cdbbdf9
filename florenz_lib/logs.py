"""Per-rule logs: logging records and stderr (where tqdm draws its bars) go to the rule's log file."""
from __future__ import annotations

import contextlib
import logging
import os


@contextlib.contextmanager
def logged(path: str):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stderr(stream), contextlib.redirect_stdout(stream):
                yield
        except BaseException:
            logging.exception("stage failed")
            raise
        finally:
            root.removeHandler(handler)
