"""Vision and text towers: plain ``nn.Module``s returning :class:`TowerOutput`."""
from twostream._alias import lazy_aliases
from twostream.towers.base import TowerOutput
from twostream.towers.hf_text import HFTextTower
from twostream.towers.open_clip_towers import OpenCLIPTextTower, OpenCLIPVisionTower
from twostream.towers.video import VideoTower

__all__ = ["TowerOutput", "OpenCLIPVisionTower", "OpenCLIPTextTower", "HFTextTower", "VideoTower"]
# deprecated: COOKIE's SharedTransformer moved to twostream.methods.cookie
__getattr__ = lazy_aliases(__name__, {"SharedTransformer": "twostream.methods.cookie"})
