"""The pipeline's stages, one module each, in the order core/pipeline.py runs them."""

from __future__ import annotations

from core.pipeline import Stages


def standard(settings, ring, admission, caching, recorder) -> Stages:
    """The stages both doors share, in their order; each door adds its own send."""
    from core.stages.admit import Admit
    from core.stages.cache import CacheLookup
    from core.stages.identify import Identify
    from core.stages.policies import InputPolicies, OutputPolicies
    from core.stages.record import Record
    from core.stages.tag import Tag

    return Stages(
        identify=Identify(settings, ring),
        tag=Tag(),
        admit=Admit(admission),
        input_policies=InputPolicies(settings),
        cache=CacheLookup(caching),
        output_policies=OutputPolicies(),
        record=Record(recorder),
    )
