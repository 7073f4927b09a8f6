"""The live full-screen view of `ioltrace top`, drawn with curses.

It owns the terminal between Screen() and close(): draws the lines that
views/top.py makes, reads single-key commands while waiting for the next
interval, follows resizes, and always restores the terminal.
"""

import curses
import time


class Screen:
    def __init__(self):
        self.win = curses.initscr()
        try:
            curses.noecho()
            curses.cbreak()
            curses.curs_set(0)
        except curses.error:
            pass
        self.win.keypad(True)
        self.win.timeout(50)

    def draw(self, state, view, with_controls):
        height, width = self.win.getmaxyx()
        lines = view.fit_lines(state.header, max(1, width - 1))
        room = max(0, height - len(lines) - 2)
        rows = view.sort_rows(state.rows, state.sort, state.reverse)
        table = view.table_lines(rows, width=max(40, width - 1), with_controls=with_controls, limit=room,
                                 layer=state.layer, second=state.second)
        lines += table
        if len(rows) > room:
            lines.append(f"... {len(rows) - room} more rows (o: only active, q: quit)")
        else:
            lines.append("keys: r w i l b n p sort, R reverse, o only active, q quit")
        self.win.erase()
        for y, text in enumerate(lines[:height]):
            try:
                self.win.addstr(y, 0, text[: max(0, width - 1)], curses.A_REVERSE if y == len(state.header) else 0)
            except curses.error:
                pass  # the bottom-right cell cannot be written; nothing lost
        self.win.refresh()

    def wait(self, deadline, state, view, with_controls, stopper):
        """Read keys until the deadline; False when the user quits."""
        while not stopper.stopped and time.monotonic() < deadline:
            try:
                ch = self.win.getch()
            except KeyboardInterrupt:
                return False
            if ch == -1:
                continue
            if ch == curses.KEY_RESIZE:
                self.draw(state, view, with_controls)
                continue
            key = chr(ch) if 0 <= ch < 256 else ""
            if not state.press(key):
                return False
            self.draw(state, view, with_controls)
        return True

    def close(self):
        try:
            self.win.keypad(False)
            curses.nocbreak()
            curses.echo()
            curses.endwin()
        except curses.error:
            pass
