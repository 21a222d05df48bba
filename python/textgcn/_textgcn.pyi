"""Type stubs of the native module ``textgcn._textgcn`` (use the ``textgcn``
package's functions; these are what they call)."""

import os
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

class TextgcnError(Exception):
    """Base class of every textgcn error; ``str(e)`` says what and where."""

class ConfigError(TextgcnError):
    """A config that cannot be loaded or built."""
    path: Optional[str]
    line: Optional[int]

class InputError(TextgcnError):
    """A corpus or data file that cannot be used."""
    path: Optional[str]
    line: Optional[int]

class StoreError(TextgcnError):
    """The artifact store failed (I/O, locks, not a store)."""
    path: Optional[str]

class DamagedError(StoreError):
    """An object, record or ref that is corrupt, missing or malformed."""
    object: Optional[str]

class RefNotFoundError(StoreError):
    """No ref of that name in the store."""

class StaleError(TextgcnError):
    """A built ref older than its config."""
    stage: str

def build(
    config: Union[str, os.PathLike[str]],
    store: Optional[Union[str, os.PathLike[str]]] = None,
    memory_limit: Union[str, int, None] = None,
    repair: bool = False,
    progress: Union[bool, Callable[[Dict[str, Any]], None], None] = None,
) -> str: ...
def status(config: Union[str, os.PathLike[str]], store: Optional[Union[str, os.PathLike[str]]] = None) -> str: ...
def refs(store: Optional[Union[str, os.PathLike[str]]] = None) -> List[str]: ...
def open(
    store: Optional[Union[str, os.PathLike[str]]] = None,
    name: Optional[str] = None,
    config: Optional[Union[str, os.PathLike[str]]] = None,
) -> Graph: ...

class Graph:
    @property
    def name(self) -> str: ...
    @property
    def store(self) -> str: ...
    @property
    def num_nodes(self) -> int: ...
    @property
    def num_docs(self) -> int: ...
    @property
    def num_edges(self) -> int: ...
    @property
    def edge_index(self) -> npt.NDArray[np.int64]: ...
    @property
    def edge_attr(self) -> npt.NDArray[np.float32]: ...
    @property
    def row_ptr(self) -> npt.NDArray[np.int64]: ...
    @property
    def zero_copy(self) -> bool: ...
    @property
    def labels(self) -> npt.NDArray[np.int64]: ...
    @property
    def label_names(self) -> List[str]: ...
    @property
    def doc_names(self) -> List[str]: ...
    def split_nodes(self, which: str) -> npt.NDArray[np.int64]: ...
    def objects(self) -> Dict[str, Tuple[str, str, str]]: ...
    def summary(self, stage: str) -> str: ...
    def table_bytes(self, name: str) -> Optional[bytes]: ...
