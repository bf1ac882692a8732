"""Vision and text towers: plain ``nn.Module``s returning :class:`TowerOutput`."""
from twostream.towers.base import TowerOutput
from twostream.towers.hf_text import HFTextTower
from twostream.towers.open_clip_towers import OpenCLIPTextTower, OpenCLIPVisionTower
from twostream.towers.shared_transformer import SharedTransformer
from twostream.towers.video import VideoTower

__all__ = ["TowerOutput", "OpenCLIPVisionTower", "OpenCLIPTextTower", "HFTextTower", "SharedTransformer", "VideoTower"]
