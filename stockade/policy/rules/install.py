"""Install-time code: the package manager must not run a component's code.

Owns the ``install-scripts`` rule: npm versions with install scripts
(``hasInstallScript``, preinstall/install/postinstall) refused unless allowed;
PyPI releases with only a source distribution (building it runs its code)
warned about or refused; and, optionally, sdists hidden where a wheel exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stockade.policy.model import Decision, Ecosystem, Facts, Mode, PackageRef, Verdict
from stockade.policy.rules.base import Entry, finding

_SDIST_SUFFIXES = (".tar.gz", ".zip", ".tar.bz2", ".tgz")


@dataclass
class InstallScriptsRule:
    """The ``install-scripts`` rule."""

    npm: Decision = Decision.BLOCK
    pypi_sdist_only: Decision = Decision.WARN
    hide_sdist_where_wheel: bool = False
    allow: Sequence[Entry] = ()
    mode: Mode = Mode.ENFORCE
    name: str = "install-scripts"

    def evaluate(self, ref: PackageRef, facts: Facts) -> Verdict | None:
        if ref.version is None or any(e.matches(ref) for e in self.allow):
            return None
        if ref.ecosystem is Ecosystem.NPM and facts.has_install_script:
            if self.npm is Decision.ALLOW:
                return None
            return finding(self.name, self.mode, self.npm,
                           f"{ref.display()} runs install scripts (preinstall/install/"
                           "postinstall) when installed")
        if ref.ecosystem is not Ecosystem.PYPI:
            return None
        is_sdist_file = ref.filename is not None and ref.filename.endswith(_SDIST_SUFFIXES)
        if self.hide_sdist_where_wheel and is_sdist_file and facts.has_wheel:
            return finding(self.name, self.mode, Decision.BLOCK,
                           f"{ref.filename} is a source distribution (building it runs its "
                           "code) and a wheel of the same version exists")
        if facts.is_sdist and facts.has_wheel is False and self.pypi_sdist_only is not \
                Decision.ALLOW:
            return finding(self.name, self.mode, self.pypi_sdist_only,
                           f"{ref.display()} has only a source distribution; installing it "
                           "runs its build code")
        return None
