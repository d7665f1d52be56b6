"""The conformance kit over this package's components: vlbench's pytest plugin provides the
fixtures, the contract classes provide the tests."""

from vlbench.testing import TaskContract, VisionEncoderContract


class TestTinyCNN(VisionEncoderContract):
    spec_name = "tiny_cnn"
    distribution = "vlbench-example-plugin"


class TestCaptionChoice(TaskContract):
    spec_name = "caption_choice"
    distribution = "vlbench-example-plugin"
