"""Which cached documents a purge of a name removes, on the URLs stockade fetches."""

from __future__ import annotations

import pytest

from stockade.policy.model import Ecosystem
from stockade.proxy.ecosystems.npm import document_url
from stockade.proxy.ecosystems.pypi import page_url
from stockade.proxy.purge import names_document

NPM = "https://registry.npmjs.org/"
PYPI = "https://pypi.org/simple/"
CENTRAL = "https://repo.maven.apache.org/maven2/"


@pytest.mark.parametrize(("eco", "name", "url", "named"), [
    (Ecosystem.PYPI, "acc-lib", page_url(PYPI, "acc-lib"), True),
    (Ecosystem.PYPI, "Acc_Lib", page_url(PYPI, "acc-lib"), True),
    (Ecosystem.PYPI, "acc-lib", "https://pypi.org/pypi/acc-lib/1.0/json", True),
    (Ecosystem.PYPI, "acc-lib",
     "https://pypi.org/integrity/acc-lib/1.0/acc_lib-1.0-py3-none-any.whl/provenance", True),
    (Ecosystem.PYPI, "acc-lib", page_url(PYPI, "acc-lib-extra"), False),
    (Ecosystem.PYPI, "acc-lib", PYPI, False),  # the root index lists every project
    (Ecosystem.NPM, "left-pad", document_url(NPM, "left-pad"), True),
    (Ecosystem.NPM, "@acme/ui", document_url(NPM, "@acme/ui"), True),
    (Ecosystem.NPM, "@acme/ui", "https://registry.npmjs.org/@acme/ui", True),
    (Ecosystem.NPM, "@acme/ui",
     "https://registry.npmjs.org/-/npm/v1/attestations/@acme%2fui@1.2.0", True),
    (Ecosystem.NPM, "left-pad",
     "https://registry.npmjs.org/-/npm/v1/attestations/left-pad@1.3.0", True),
    (Ecosystem.NPM, "node", document_url(NPM, "@types/node"), False),
    (Ecosystem.NPM, "left-pad", document_url(NPM, "left-pad-2"), False),
    (Ecosystem.NPM, "@acme/ui", document_url(NPM, "@acme/ui-kit"), False),
    (Ecosystem.MAVEN, "org.apache.logging.log4j:log4j-core",
     CENTRAL + "org/apache/logging/log4j/log4j-core/maven-metadata.xml", True),
    (Ecosystem.MAVEN, "org.apache.logging.log4j:log4j-core",
     CENTRAL + "org/apache/logging/log4j/log4j-core/2.14.1/log4j-core-2.14.1.pom.sha1",
     True),
    (Ecosystem.MAVEN, "org.apache.logging.log4j:log4j-core",
     CENTRAL + "org/apache/logging/log4j/log4j-api/maven-metadata.xml", False),
])
def test_which_documents_a_purge_names(eco: Ecosystem, name: str, url: str,
                                       named: bool) -> None:
    assert names_document(eco, name, url) is named
