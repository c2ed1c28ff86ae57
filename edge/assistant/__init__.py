"""The hands-free assistant (``edge-run --assistant``): wake word, request, command or answer, spoken reply.

- :mod:`.loop`: :class:`Assistant`, a generator of :class:`Event` over any stream of audio blocks;
- :mod:`.endpoint`: when a request has ended (a shorter silence once it is already a whole command);
- :mod:`.reply`: short answers sentence by sentence, and the :class:`Voice` that speaks them and can be cut off;
- :mod:`.sources`: a recording or the microphone as blocks.
"""

from __future__ import annotations

from edge.assistant.endpoint import Endpointing
from edge.assistant.loop import Assistant, Event
from edge.assistant.reply import Answerer, Voice
from edge.assistant.sources import file_blocks, microphone_blocks

__all__ = ["Answerer", "Assistant", "Endpointing", "Event", "Voice", "file_blocks", "microphone_blocks"]
