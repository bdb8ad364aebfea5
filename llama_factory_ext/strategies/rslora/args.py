
from pydantic import BaseModel, ConfigDict


class RsloraArgs(BaseModel):
    """RSLoRA owns no new keys; it reads the host's ``lora_rank``, ``lora_alpha``, ``lora_target``."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, defer_build=True)
