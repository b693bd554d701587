# setup.py — records at install time the checkout the package came from, so that an installed clattn finds its build/libclattn.so.
import os

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPy(build_py):
    def run(self):
        super().run()
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        out = os.path.join(self.build_lib, "clattn", "_checkout.py")
        with open(out, "w", encoding="utf-8") as f:
            f.write('"""_checkout.py — written by setup.py at install time: the checkout this package '
                    f'was installed from."""\nROOT = {root!r}\n')


setup(cmdclass={"build_py": BuildPy})
