"""SAMUS Segment: click positive/negative points frame by frame on ultrasound volumes and cine
loops; a MONAI Label server running the SAMUS app returns the masks.

The work is split in three layers:
- SAMUSSegmentLib: Slicer-free logic (geometry, prompts, undo, HTTP client, NRRD, session);
- SAMUSSegmentScene: adapters between the MRML scene and that logic;
- this file: the module, its GUI and the logic that wires them together.
The self-test is Testing/Python/SAMUSSegmentTest.py (SAMUSSegment.runTest loads it for Reload & Test).
Server calls run on a worker thread; their results are applied to the scene on the main
thread by a Qt timer that polls the worker.
"""
import json
import logging
import os
import importlib.util
import tempfile
from typing import Annotated

import numpy as np
import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from SAMUSSegmentLib import geometry
from SAMUSSegmentLib.chunks import DEFAULT_CHUNK_FRAMES, ChunkedPropagation
from SAMUSSegmentLib.client import INTERACTIVE_MODEL, PROPAGATION_MODEL, TRAINER, SamusClient, ServerError
from SAMUSSegmentLib.geometry import GeometryError
from SAMUSSegmentLib.models import choose, model_choices, propagation_hint
from SAMUSSegmentLib.prompts import PromptStore
from SAMUSSegmentLib.session import InteractiveSession
from SAMUSSegmentLib.shortcuts import SHORTCUTS, help_lines
from SAMUSSegmentLib.training import read_training
from SAMUSSegmentLib.upload import ImageUploader
from SAMUSSegmentLib.worker import TaskRunner
from SAMUSSegmentScene.masks import maskStoreFor
from SAMUSSegmentScene.sources import frameSourceFor, numpyMatrix
from SAMUSSegmentScene.sources import vtkMatrix as vtkMatrixFrom

PROMPTS_ATTRIBUTE = "SAMUSSegment.Prompts"
# Module settings (Slicer's application settings, via QSettings): the model choices last used.
CLICK_MODEL_SETTING = "SAMUSSegment/ClickModel"
PROPAGATION_MODEL_SETTING = "SAMUSSegment/PropagationModel"
BOX_UNCHANGED = object()  # readMarkups: the box is being drawn (one corner so far); keep the stored one
SEGMENTATION_REFERENCE = "SAMUSSegment.Segmentation"
STRATEGIES = ("random", "first", "diversity")
POLL_INTERVAL_MS = 50
# Errors that come from what the user did or what the scene holds (no server, a point off the frame, a cine
# browser without a selected item: frame -1); shown in the status line instead of as a traceback.
USER_ERRORS = (ServerError, ValueError, GeometryError, IndexError)
# While a request runs, each timer tick waits this long for its result, which hands Python's lock to
# the worker thread (Slicer's main thread holds it otherwise, and the worker would crawl).
POLL_WAIT_S = 0.02


class SAMUSSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SAMUS Segment"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["SAMUS for MONAI Label project"]
        self.parent.helpText = (
            "Point-prompted ultrasound segmentation with SAMUS served by MONAI Label. Connect to the server, "
            "pick a volume (frames = K slices) or a cine sequence (frames = browser items), then place positive "
            "and negative points or draw a box (two corners): each change re-segments the shown frame only. "
            "Choose the server's accurate or fast model. Propagate a mask over the next frames (in chunks you "
            "can stop), submit labels and fine-tune the model.<br>Shortcuts: " + "; ".join(help_lines())
        )
        self.parent.acknowledgementText = (
            "SAMUS: Lin et al., 'SAMUS: Adapting Segment Anything Model for Clinically-Friendly and Generalizable "
            "Ultrasound Image Segmentation', arXiv 2309.06824. Built on MONAI Label and 3D Slicer."
        )

    def runTest(self, msec=100, **kwargs):
        """Reload & Test and the Self Tests module call this; the test case is in Testing/Python."""
        testCase = selfTestClass()()
        testCase.messageDelay = msec
        testCase.runTest(**kwargs)


SELF_TEST_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Testing", "Python", "SAMUSSegmentTest.py")


def selfTestClass():
    """SAMUSSegmentTest from Testing/Python (Slicer's place for a scripted module's tests; it is in the
    source tree, which Reload & Test runs from, not in an installed extension)."""
    if not os.path.isfile(SELF_TEST_FILE):
        raise AssertionError(f"the self-test is not installed with the module; it is {SELF_TEST_FILE} in the source")
    spec = importlib.util.spec_from_file_location("SAMUSSegmentTest", SELF_TEST_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SAMUSSegmentTest


@parameterNodeWrapper
class SAMUSSegmentParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    serverUrl: str = "http://127.0.0.1:8000"
    propagateCount: Annotated[int, WithinRange(1, 10000)] = 10


class SAMUSSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._shortcuts = []
        self._stolenShortcuts = []
        self._frameObserved = None
        self._shownFrame = None
        self._syncScheduled = False
        self._trainingRequestPending = False

    # -- setup / teardown --------------------------------------------------------------------
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SAMUSSegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = SAMUSSegmentLogic()
        self.logic.onStatus = self.showStatus
        self.logic.onError = self.showError
        self.logic.onPromptsRestored = self.refreshPoints
        self.logic.onMasksChanged = lambda frames: self.updateFrameLabel()

        for placeWidget in (self.ui.positivePlaceWidget, self.ui.negativePlaceWidget, self.ui.boxPlaceWidget):
            placeWidget.buttonsVisible = False
            placeWidget.placeButton().show()
            placeWidget.deleteButton().show()
        self.logic.onPropagationProgress = self.showPropagation
        self.showModelChoices()
        self.ui.strategyComboBox.addItems(list(STRATEGIES))
        self.ui.trainingProgressBar.setRange(0, 100)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.connectButton.connect("clicked(bool)", self.onConnect)
        self.ui.serverUrlLineEdit.connect("returnPressed()", self.onConnect)
        self.ui.modelComboBox.connect("currentTextChanged(QString)", self.onModelChanged)
        self.ui.propagateModelComboBox.connect("currentTextChanged(QString)", self.onPropagateModelChanged)
        self.ui.stopPropagationButton.connect("clicked(bool)", self.onStopPropagation)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputChanged)
        self.ui.segmentSelector.connect("currentSegmentChanged(QString)", self.onSegmentChanged)
        self.ui.addSegmentButton.connect("clicked(bool)", self.onAddSegment)
        self.ui.clearFramePointsButton.connect("clicked(bool)", self.onClearFrame)
        self.ui.undoButton.connect("clicked(bool)", self.onUndo)
        self.ui.previousFrameButton.connect("clicked(bool)", lambda: self.onStepFrame(-1))
        self.ui.nextFrameButton.connect("clicked(bool)", lambda: self.onStepFrame(1))
        self.ui.propagateNextButton.connect("clicked(bool)", self.onPropagateNext)
        self.ui.propagateAllButton.connect("clicked(bool)", self.onPropagateAll)
        self.ui.submitLabelsButton.connect("clicked(bool)", self.onSubmitLabels)
        self.ui.trainButton.connect("clicked(bool)", self.onStartTraining)
        self.ui.stopTrainingButton.connect("clicked(bool)", self.onStopTraining)
        self.ui.nextSampleButton.connect("clicked(bool)", self.onNextSample)

        # Results of server calls are applied here, on the main thread.
        self.pollTimer = qt.QTimer()
        self.pollTimer.setInterval(POLL_INTERVAL_MS)
        self.pollTimer.connect("timeout()", self.onPoll)
        self.pollTimer.start()
        self.trainingTimer = qt.QTimer()
        self.trainingTimer.setInterval(3000)
        self.trainingTimer.connect("timeout()", self.onTrainingTimer)

        self.initializeParameterNode()
        self.updateButtons()

    def cleanup(self) -> None:
        """Called when the module is reloaded or Slicer exits: stop the timers and the worker thread."""
        self.removeObservers()
        for timer in (getattr(self, "pollTimer", None), getattr(self, "trainingTimer", None)):
            if timer is not None:
                timer.stop()
        self.removeShortcuts()
        if self.logic:
            self.logic.runner.shutdown()  # returns at once; a request in flight is abandoned

    def enter(self) -> None:
        self.initializeParameterNode()
        self.installShortcuts()

    def exit(self) -> None:
        self.removeShortcuts()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self.logic.reset()
        self._shownFrame = None

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    # -- keyboard shortcuts --------------------------------------------------------------------
    def installShortcuts(self) -> None:
        if self._shortcuts:
            return
        actions = {"nextFrame": lambda: self.onStepFrame(1), "previousFrame": lambda: self.onStepFrame(-1),
                   "positiveMode": lambda: self.startPlacing(True), "negativeMode": lambda: self.startPlacing(False),
                   "boxMode": self.startBox,
                   "propagate": self.onPropagateNext, "undo": self.onUndo}
        mainWindow = slicer.util.mainWindow()
        if mainWindow is None:
            return
        for name, (keys, _) in SHORTCUTS.items():
            sequence = qt.QKeySequence(keys)
            # An application action with the same keys (Edit > Undo has Ctrl+Z) would make the
            # shortcut ambiguous and neither would fire: borrow its keys while the module is shown.
            for action in mainWindow.findChildren(qt.QAction):
                if action.shortcut.toString() == sequence.toString():
                    self._stolenShortcuts.append((action, action.shortcut))
                    action.shortcut = qt.QKeySequence()
            shortcut = qt.QShortcut(sequence, mainWindow)
            shortcut.connect("activated()", actions[name])
            self._shortcuts.append(shortcut)

    def removeShortcuts(self) -> None:
        for shortcut in self._shortcuts:
            shortcut.setEnabled(False)
            shortcut.setParent(None)
            shortcut.deleteLater()
        self._shortcuts = []
        for action, sequence in self._stolenShortcuts:
            action.shortcut = sequence
        self._stolenShortcuts = []

    # -- status ----------------------------------------------------------------------------------
    def showStatus(self, text: str) -> None:
        self.ui.statusLabel.setStyleSheet("")
        self.ui.statusLabel.text = text
        logging.info(f"SAMUSSegment: {text}")

    def showError(self, text: str) -> None:
        self.ui.statusLabel.setStyleSheet("color: #c0392b")
        self.ui.statusLabel.text = text
        logging.warning(f"SAMUSSegment: {text}")

    def onPoll(self) -> None:
        try:
            self.logic.runner.poll(wait=POLL_WAIT_S)
        except Exception as exc:  # a callback failed: show it, keep the timer alive
            logging.exception("SAMUSSegment callback failed")
            self.showError(str(exc))
        busy = self.logic.runner.current()
        if busy:
            self.ui.statusLabel.setStyleSheet("")
            self.ui.statusLabel.text = f"Working: {busy}"

    def updateButtons(self) -> None:
        hasInput = self.logic.session is not None
        connected = self.logic.client is not None
        for widget in (self.ui.positivePlaceWidget, self.ui.negativePlaceWidget, self.ui.boxPlaceWidget,
                       self.ui.clearFramePointsButton,
                       self.ui.undoButton, self.ui.previousFrameButton, self.ui.nextFrameButton,
                       self.ui.addSegmentButton):
            widget.enabled = hasInput
        for widget in (self.ui.propagateNextButton, self.ui.propagateAllButton, self.ui.submitLabelsButton):
            widget.enabled = hasInput and connected
        for widget in (self.ui.trainButton, self.ui.stopTrainingButton, self.ui.nextSampleButton):
            widget.enabled = connected
        self.ui.stopPropagationButton.enabled = self.logic.propagating

    # -- server ----------------------------------------------------------------------------------
    def onConnect(self) -> None:
        url = self.ui.serverUrlLineEdit.text
        self.ui.serverStatusLabel.text = f"Connecting to {url} ..."
        try:
            self.logic.connectAsync(url, self.onConnected, self.onConnectFailed)
        except ServerError as exc:
            self.onConnectFailed(exc)

    def onConnected(self, info) -> None:
        models = info.get("models", {})
        self.showModelChoices()
        strategies = list(info.get("strategies", {})) or list(STRATEGIES)
        self.ui.strategyComboBox.clear()
        self.ui.strategyComboBox.addItems(strategies)
        described = ", ".join(f"{name} ({m.get('type', '?')})" for name, m in models.items())
        self.ui.serverStatusLabel.text = f"Connected to {info.get('name', 'MONAI Label')}. Models: {described}."
        self.ui.serverStatusLabel.setStyleSheet("")
        self.updateButtons()

    def onConnectFailed(self, exc) -> None:
        self.ui.serverStatusLabel.text = str(exc)
        self.ui.serverStatusLabel.setStyleSheet("color: #c0392b")
        self.updateButtons()

    def showModelChoices(self) -> None:
        """Fills the two model selectors from the server's choices; hides them when it offers none."""
        for combo, label, choices, current in (
                (self.ui.modelComboBox, self.ui.modelLabel, self.logic.modelChoices, self.logic.modelChoice),
                (self.ui.propagateModelComboBox, self.ui.propagateModelLabel, self.logic.propagateChoices,
                 self.logic.propagateChoice)):
            wasBlocked = combo.blockSignals(True)
            try:
                combo.clear()
                combo.addItems(list(choices))
                if current:
                    combo.setCurrentText(current)
            finally:
                combo.blockSignals(wasBlocked)
            combo.visible = label.visible = bool(choices)

    def onModelChanged(self, name) -> None:
        if name:
            self.logic.setModelChoice(name)

    def onPropagateModelChanged(self, name) -> None:
        if name:
            self.logic.setPropagateChoice(name)

    # -- input and segments --------------------------------------------------------------------------
    def onInputChanged(self, node) -> None:
        self.stopPlacing()
        try:
            description = self.logic.setInput(node)
        except Exception as exc:  # shown to the user; the module stays usable with another input
            logging.exception("SAMUSSegment: cannot use input")
            slicer.util.errorDisplay(f"Cannot use this input: {exc}")
            self.logic.setInput(None)
            description = "Select a volume or a cine sequence."
        self.ui.inputInfoLabel.text = description
        self.ui.segmentSelector.setCurrentNode(self.logic.segmentationNode)
        if self.logic.segmentId:
            self.ui.segmentSelector.setCurrentSegmentID(self.logic.segmentId)
        self.ui.positivePlaceWidget.setCurrentNode(self.logic.positiveNode)
        self.ui.negativePlaceWidget.setCurrentNode(self.logic.negativeNode)
        self.ui.boxPlaceWidget.setCurrentNode(self.logic.boxNode)
        for placeWidget in (self.ui.positivePlaceWidget, self.ui.negativePlaceWidget):
            placeWidget.setPlaceModePersistency(True)
        self.observePoints()
        self.observeFrames()
        self._shownFrame = None
        self.onFrameMaybeChanged()
        self.updateButtons()

    def onSegmentChanged(self, segmentId) -> None:
        if segmentId and self.logic.session is not None and segmentId != self.logic.segmentId:
            self.logic.setSegment(segmentId)
            self.refreshPoints()

    def onAddSegment(self) -> None:
        segmentId = self.logic.addSegment()
        self.ui.segmentSelector.setCurrentSegmentID(segmentId)
        self.refreshPoints()

    # -- points --------------------------------------------------------------------------------------
    def observePoints(self) -> None:
        for node in (self.logic.positiveNode, self.logic.negativeNode, self.logic.boxNode):
            if node is None:
                continue
            for event in (slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent,
                          slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent,
                          slicer.vtkMRMLMarkupsNode.PointRemovedEvent):
                if not self.hasObserver(node, event, self.onPointsEvent):
                    self.addObserver(node, event, self.onPointsEvent)

    def onPointsEvent(self, caller, event) -> None:
        # Ignore the module's own edits (showing another frame's points); defer the rest so that
        # one user action (e.g. "delete all") triggers one update.
        if self.logic.restoringPoints or self._syncScheduled:
            return
        self._syncScheduled = True
        qt.QTimer.singleShot(0, self.syncPoints)

    def syncPoints(self) -> None:
        self._syncScheduled = False
        try:
            self.logic.updateFromMarkups()
        except USER_ERRORS as exc:
            self.showError(str(exc))

    def refreshPoints(self) -> None:
        if self.logic.session is not None:
            self.logic.showPoints()
        self.updateFrameLabel()

    def startPlacing(self, positive: bool) -> None:
        if self.logic.session is None:
            return
        widget = self.ui.positivePlaceWidget if positive else self.ui.negativePlaceWidget
        widget.setPlaceModeEnabled(True)

    def startBox(self) -> None:
        """Box tool: the frame's box is redrawn by two clicks on opposite corners (markups ROI placement)."""
        if self.logic.session is None:
            return
        self.logic.clearBoxMarkup()  # the stored box stays until the new one is complete
        self.ui.boxPlaceWidget.setPlaceModeEnabled(True)

    def stopPlacing(self) -> None:
        for widget in (self.ui.positivePlaceWidget, self.ui.negativePlaceWidget, self.ui.boxPlaceWidget):
            if widget.currentNode() is not None:
                widget.setPlaceModeEnabled(False)

    def onClearFrame(self) -> None:
        try:
            self.logic.clearFrame()
        except USER_ERRORS as exc:
            self.showError(str(exc))

    def onUndo(self) -> None:
        if self.logic.session is not None:
            self.logic.undo()

    # -- frames --------------------------------------------------------------------------------------
    def observeFrames(self) -> None:
        if self._frameObserved is not None:
            self.removeObserver(self._frameObserved, vtk.vtkCommand.ModifiedEvent, self.onFrameNodeModified)
            self._frameObserved = None
        node = self.logic.frames.observedNode() if self.logic.frames else None
        if node is not None:
            self.addObserver(node, vtk.vtkCommand.ModifiedEvent, self.onFrameNodeModified)
            self._frameObserved = node

    def onFrameNodeModified(self, caller, event) -> None:
        self.onFrameMaybeChanged()

    def onFrameMaybeChanged(self) -> None:
        if self.logic.frames is None:
            self.updateFrameLabel()
            return
        frame = self.logic.frames.currentFrame()
        if frame != self._shownFrame:
            self._shownFrame = frame
            self.refreshPoints()

    def updateFrameLabel(self) -> None:
        if self.logic.frames is None:
            self.ui.frameLabel.text = "Frame -"
            return
        frame = self.logic.frames.currentFrame()
        prompts = self.logic.session.prompts.get(self.logic.segmentId, frame)
        box = ", box" if prompts.box else ""
        marks = f" ({len(prompts.positive)}+ / {len(prompts.negative)}-{box})" if prompts else ""
        self.ui.frameLabel.text = f"Frame {frame + 1} / {self.logic.frames.n_frames}{marks}"

    def onStepFrame(self, step: int) -> None:
        if self.logic.frames is not None:
            self.logic.goToFrame(self.logic.frames.currentFrame() + step)
            self.onFrameMaybeChanged()

    def onPropagateNext(self) -> None:
        self._propagate(self.ui.propagateCountSpinBox.value)

    def onPropagateAll(self) -> None:
        self._propagate(None)

    def _propagate(self, count) -> None:
        try:
            self.logic.propagate(count)
        except USER_ERRORS as exc:
            self.showError(str(exc))
        self.updateButtons()

    def onStopPropagation(self) -> None:
        self.logic.stopPropagation()
        self.updateButtons()

    def showPropagation(self, text: str) -> None:
        self.ui.propagationStatusLabel.text = text
        self.updateButtons()

    # -- labels, training, samples ------------------------------------------------------------------
    def onSubmitLabels(self) -> None:
        try:
            self.logic.submitLabels()
        except USER_ERRORS as exc:
            self.showError(str(exc))

    def onStartTraining(self) -> None:
        try:
            self.logic.startTraining(onDone=lambda _: self._followTraining(), onError=self.showError)
        except ServerError as exc:
            self.showError(str(exc))

    def onStopTraining(self) -> None:
        try:
            self.logic.stopTraining(onDone=lambda _: self.onTrainingTimer(), onError=self.showError)
        except ServerError as exc:
            self.showError(str(exc))

    def _followTraining(self) -> None:
        self.showStatus("Training started.")
        self.trainingTimer.start()
        self.onTrainingTimer()

    def onTrainingTimer(self) -> None:
        if self._trainingRequestPending or self.logic.client is None:
            return
        self._trainingRequestPending = True

        def done(described):
            self._trainingRequestPending = False
            status, fraction, text = described
            self.ui.trainingStatusLabel.text = text
            if status in ("RUNNING", "SUBMITTED") and fraction is None:
                self.ui.trainingProgressBar.setRange(0, 0)  # busy indicator
            else:
                self.ui.trainingProgressBar.setRange(0, 100)
                self.ui.trainingProgressBar.value = int(round(100 * (fraction or 0)))
            if status not in ("RUNNING", "SUBMITTED"):
                self.trainingTimer.stop()

        def failed(exc):
            self._trainingRequestPending = False
            self.trainingTimer.stop()
            self.showError(str(exc))

        self.logic.trainingStatus(done, failed)

    def onNextSample(self) -> None:
        strategy = self.ui.strategyComboBox.currentText or STRATEGIES[0]

        def loaded(node):
            if node is None:
                self.showStatus(f"Strategy '{strategy}' has no unlabelled image left.")
                return
            self.ui.inputVolumeSelector.setCurrentNode(node)
            self.showStatus(f"Loaded next sample '{node.GetName()}' ({strategy}).")

        try:
            self.logic.nextSample(strategy, loaded)
        except ServerError as exc:
            self.showError(str(exc))


class SAMUSSegmentLogic(ScriptedLoadableModuleLogic):
    """Everything the GUI does, callable from scripts and tests (main thread only).

    Server calls go through `self.runner`; their callbacks run when `runner.poll()` is called
    (by the widget's timer, or by `runner.wait()` in scripts and tests).
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.runner = TaskRunner()
        self.client = None
        self.info = {}
        self.uploader = None
        self.model = INTERACTIVE_MODEL
        # The server's model choices per task (default first) and the ones in use; [] / None: not offered.
        self.modelChoices, self.propagateChoices = [], []
        self.modelChoice = self.propagateChoice = None
        self.chunkFrames = DEFAULT_CHUNK_FRAMES
        self.propagation = None  # the running ChunkedPropagation
        self.positiveNode = None
        self.negativeNode = None
        self.boxNode = None
        self._redrawingBox = False  # the box tool emptied the box markup to draw a new box
        self.restoringPoints = 0
        self._inputs = {}  # input node id -> (frames, masks, session)
        self._epoch = 0  # incremented when the scene is closed: late results of old jobs are dropped
        self.reset()
        self.onStatus = lambda text: logging.info(text)
        self.onError = lambda text: logging.warning(text)
        self.onPromptsRestored = lambda: None
        self.onMasksChanged = lambda frames: None
        self.onPropagationProgress = lambda text: None

    def getParameterNode(self):
        return SAMUSSegmentParameterNode(super().getParameterNode())

    def reset(self) -> None:
        """Forgets the scene (after a scene close); keeps the server connection."""
        self._epoch += 1
        if getattr(self, "propagation", None) is not None:
            self.propagation.stop()
        self.propagation = None
        self.frames = self.masks = self.session = None
        self.segmentationNode = None
        self.segmentId = None
        self.positiveNode = self.negativeNode = self.boxNode = None
        self._inputs = {}

    # -- server ----------------------------------------------------------------------------------
    def connect(self, url: str, timeout: float = 10.0) -> dict:
        """Blocking connect (scripts, tests); the GUI uses connectAsync."""
        client = SamusClient(url, timeout=timeout)
        info = client.connect()
        self._useClient(client, info)
        return info

    def connectAsync(self, url: str, onDone, onError) -> None:
        client = SamusClient(url)

        def done(info):
            self._useClient(client, info)
            onDone(info)

        self.runner.submit(client.connect, on_done=done, on_error=onError, label=f"connecting to {client.url}")

    def _useClient(self, client, info) -> None:
        self.client, self.info = client, info
        self.uploader = ImageUploader(client)
        for _, _, session in self._inputs.values():
            session.client, session.uploader = client, self.uploader
        # The server's choices; the ones remembered in the settings when the server still offers them.
        self.modelChoices = model_choices(info, INTERACTIVE_MODEL)
        self.propagateChoices = model_choices(info, PROPAGATION_MODEL)
        self.modelChoice = choose(self.modelChoices, self._setting(CLICK_MODEL_SETTING))
        self.propagateChoice = choose(self.propagateChoices, self._setting(PROPAGATION_MODEL_SETTING))
        self._shareChoices()

    @staticmethod
    def _setting(key: str):
        value = qt.QSettings().value(key)
        return value if isinstance(value, str) else None

    def _shareChoices(self) -> None:
        for _, _, session in self._inputs.values():
            session.model_choice, session.propagate_choice = self.modelChoice, self.propagateChoice

    def setModelChoice(self, name: str) -> None:
        """The server's model for clicks and boxes (e.g. "accurate"); remembered in the module settings."""
        if name not in self.modelChoices:
            raise ValueError(f"the server offers no model '{name}' for clicks ({', '.join(self.modelChoices)})")
        self.modelChoice = name
        qt.QSettings().setValue(CLICK_MODEL_SETTING, name)
        self._shareChoices()

    def setPropagateChoice(self, name: str) -> None:
        """The server's model for propagation (e.g. "fast"); remembered in the module settings."""
        if name not in self.propagateChoices:
            raise ValueError(f"the server offers no model '{name}' for propagation "
                             f"({', '.join(self.propagateChoices)})")
        self.propagateChoice = name
        qt.QSettings().setValue(PROPAGATION_MODEL_SETTING, name)
        self._shareChoices()

    def requireClient(self) -> None:
        if self.client is None:
            raise ServerError("Connect to the MONAI Label server first (Server section).")

    # -- input -------------------------------------------------------------------------------------
    def setInput(self, volumeNode) -> str:
        """Makes a volume (or a cine's proxy volume) the input; returns a description of its frames."""
        if volumeNode is None:
            self.frames = self.masks = self.session = None
            self.segmentationNode, self.segmentId = None, None
            return "Select a volume or a cine sequence."
        self._ensurePointNodes()
        if volumeNode.GetID() in self._inputs:
            self.frames, self.masks, self.session = self._inputs[volumeNode.GetID()]
        else:
            frames = frameSourceFor(volumeNode)
            masks = maskStoreFor(frames, self._segmentationFor(frames))
            session = InteractiveSession(self.client, masks, frames.stack(), uploader=self.uploader, model=self.model)
            session.model_choice, session.propagate_choice = self.modelChoice, self.propagateChoice
            saved = frames.persistentNode.GetAttribute(PROMPTS_ATTRIBUTE)
            if saved:
                session.prompts = PromptStore.from_json(json.loads(saved))
            self.frames, self.masks, self.session = frames, masks, session
            self._inputs[volumeNode.GetID()] = (frames, masks, session)
        self.segmentationNode = self.masks.layer.node
        # Masks are written in the volume's voxel grid: keep the segmentation under the same transform.
        self.segmentationNode.SetAndObserveTransformNodeID(volumeNode.GetTransformNodeID())
        segmentation = self.segmentationNode.GetSegmentation()
        if segmentation.GetNumberOfSegments() == 0:
            segmentation.AddEmptySegment("", "lesion", [0.2, 0.9, 0.3])
        self.setSegment(segmentation.GetNthSegmentID(0))
        slicer.util.setSliceViewerLayers(background=volumeNode)
        self.frames.showFrame(self.frames.currentFrame(), align=True)
        return self.frames.describe()

    def _segmentationFor(self, frames):
        node = frames.persistentNode.GetNodeReference(SEGMENTATION_REFERENCE)
        if node is None:
            node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{frames.name()} SAMUS")
            node.CreateDefaultDisplayNodes()
            node.SetReferenceImageGeometryParameterFromVolumeNode(frames.referenceVolume)
            node.GetSegmentation().AddEmptySegment("", "lesion", [0.2, 0.9, 0.3])
            frames.persistentNode.SetNodeReferenceID(SEGMENTATION_REFERENCE, node.GetID())
        return node

    def _ensurePointNodes(self) -> None:
        for attr, name, color in (("positiveNode", "SAMUS positive", (0.1, 0.85, 0.2)),
                                  ("negativeNode", "SAMUS negative", (0.95, 0.15, 0.1))):
            node = getattr(self, attr)
            if node is None or slicer.mrmlScene.GetNodeByID(node.GetID()) is None:
                node = slicer.mrmlScene.GetFirstNodeByName(name)
                if node is None or not node.IsA("vtkMRMLMarkupsFiducialNode"):
                    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
                    node.CreateDefaultDisplayNodes()
                    display = node.GetDisplayNode()
                    display.SetSelectedColor(*color)
                    display.SetActiveColor(*color)
                    display.SetPointLabelsVisibility(False)
                setattr(self, attr, node)
        if self.boxNode is None or slicer.mrmlScene.GetNodeByID(self.boxNode.GetID()) is None:
            node = slicer.mrmlScene.GetFirstNodeByName("SAMUS box")
            if node is None or not node.IsA("vtkMRMLMarkupsROINode"):
                node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "SAMUS box")
                node.CreateDefaultDisplayNodes()
                node.GetDisplayNode().SetSelectedColor(0.95, 0.75, 0.1)
                node.GetDisplayNode().SetPointLabelsVisibility(False)
            self.boxNode = node

    def setSegment(self, segmentId: str) -> None:
        self.segmentId = segmentId
        if hasattr(self.masks.layer, "rememberSegment"):  # cine: items created later get the segment too
            self.masks.layer.rememberSegment(segmentId)

    def addSegment(self) -> str:
        segmentation = self.segmentationNode.GetSegmentation()
        segmentId = segmentation.AddEmptySegment("", f"structure {segmentation.GetNumberOfSegments() + 1}")
        self.setSegment(segmentId)
        if hasattr(self.masks.layer, "addSegmentToAllFrames"):
            self.masks.layer.addSegmentToAllFrames(segmentId)
        return segmentId

    # -- points ------------------------------------------------------------------------------------
    def readMarkups(self):
        """(frame, positive [(i, j)], negative [(i, j)], box, rejected [(node, index, reason)]) of the shown frame.

        box: (i0, j0, i1, j1), None when the box markup is empty, or BOX_UNCHANGED while it is being drawn.
        """
        frame = self.frames.currentFrame()
        positive, negative, rejected = [], [], []
        for node, points in ((self.positiveNode, positive), (self.negativeNode, negative)):
            for n in range(node.GetNumberOfControlPoints()):
                if node.GetNthControlPointPositionStatus(n) != slicer.vtkMRMLMarkupsNode.PositionDefined:
                    continue
                world = [0.0, 0.0, 0.0]
                node.GetNthControlPointPositionWorld(n, world)
                try:
                    pointFrame, i, j = self.frames.locate(world)
                except GeometryError as exc:
                    rejected.append((node, n, str(exc)))
                    continue
                if pointFrame != frame:
                    rejected.append((node, n, f"the point is on frame {pointFrame + 1}, not on the shown frame "
                                              f"{frame + 1}; place points in the {self.frames.viewName} view"))
                    continue
                points.append((i, j))
        box = self.readBox(frame, rejected)
        return frame, positive, negative, box, rejected

    def readBox(self, frame: int, rejected: list):
        node = self.boxNode
        if node is None:
            return None
        if node.GetNumberOfControlPoints() == 0:
            # Empty because the box tool is redrawing it (until the new box is complete, or the redraw was
            # abandoned): keep the frame's box. Otherwise the user deleted it.
            return BOX_UNCHANGED if self._redrawingBox else None
        # While a box is drawn it needs 2 defined corners (RequiredNumberOfControlPoints is 2, and the moving
        # corner is only a preview); once complete the ROI keeps 1 point, its centre (vtkMRMLMarkupsROINode).
        if node.GetNumberOfDefinedControlPoints() < max(1, node.GetRequiredNumberOfControlPoints()):
            return BOX_UNCHANGED
        size = [0.0, 0.0, 0.0]
        node.GetSize(size)
        if min(size) <= 0:
            return BOX_UNCHANGED
        centre = [0.0, 0.0, 0.0]
        node.GetCenterWorld(centre)
        try:
            boxFrame = self.frames.locate(centre)[0]
        except GeometryError as exc:
            rejected.append((node, -1, f"the box is not on a frame: {exc}"))
            return None
        if boxFrame != frame:
            rejected.append((node, -1, f"the box is on frame {boxFrame + 1}, not on the shown frame {frame + 1}"))
            return None
        worldToIJK = geometry.invert(self.frames.ijkToWorld())
        box = geometry.box_from_roi(numpyMatrix(node.GetObjectToWorldMatrix()), size, worldToIJK,
                                    self.frames.frame_shape)
        self._redrawingBox = False
        if box is None or box[2] - box[0] < 1 or box[3] - box[1] < 1:
            rejected.append((node, -1, "the box covers less than 2 x 2 pixels of the frame"))
            return None
        return box

    def clearBoxMarkup(self) -> None:
        """Empties the box markup without touching the stored box (the box tool is about to redraw it)."""
        if self.boxNode is not None:
            self._redrawingBox = True
            self.restoringPoints += 1
            try:
                self.boxNode.RemoveAllControlPoints()
            finally:
                self.restoringPoints -= 1

    def updateFromMarkups(self):
        """Re-runs the shown frame after its points were placed, moved or deleted."""
        if self.session is None:
            return None
        frame, positive, negative, box, rejected = self.readMarkups()
        if box is BOX_UNCHANGED:
            box = self.session.prompts.get(self.segmentId, frame).box
        if rejected:
            self.restoringPoints += 1
            try:
                for node, n, _ in sorted(rejected, key=lambda r: -r[1]):
                    if n < 0:
                        node.RemoveAllControlPoints()  # the box
                    else:
                        node.RemoveNthControlPoint(n)
            finally:
                self.restoringPoints -= 1
            self.onError("Removed: " + rejected[0][2])
        return self.setPoints(frame, positive, negative, box=box)

    def setPoints(self, frame: int, positive, negative, segmentId: str = None, box=None):
        """Records one frame's points and box and segments it on the server; returns the job (None if unchanged)."""
        if positive or box:
            self.requireClient()
        self.session.set_stack(self.frames.stack())
        job = self.session.set_points(segmentId or self.segmentId, frame, positive, negative, box)
        if job is not None:
            self._run(job)
        self._savePrompts()
        return job

    def showPoints(self, frame: int = None) -> None:
        """Shows the stored points of a frame (default: the shown one) in the two point lists."""
        frame = self.frames.currentFrame() if frame is None else frame
        prompts = self.session.prompts.get(self.segmentId, frame)
        self.restoringPoints += 1
        try:
            for node, points in ((self.positiveNode, prompts.positive), (self.negativeNode, prompts.negative)):
                wasModifying = node.StartModify()
                node.RemoveAllControlPoints()
                for i, j in points:
                    node.AddControlPointWorld(vtk.vtkVector3d(*self.frames.toWorld(frame, i, j)))
                node.EndModify(wasModifying)
            self.showBox(frame, prompts.box)
        finally:
            self.restoringPoints -= 1

    def showBox(self, frame: int, box) -> None:
        """The frame's box as the ROI markup, aligned with the frame's pixels (empty when it has none)."""
        node = self.boxNode
        if node is None:
            return
        self._redrawingBox = False
        wasModifying = node.StartModify()
        try:
            if box is None:
                node.RemoveAllControlPoints()
                return
            origin = np.asarray(self.frames.toWorld(frame, 0, 0))
            stepI = np.asarray(self.frames.toWorld(frame, 1, 0)) - origin
            stepJ = np.asarray(self.frames.toWorld(frame, 0, 1)) - origin
            objectToWorld, size = geometry.box_roi(box, origin, stepI, stepJ)
            # The ROI node is not transformed: its node coordinates are world coordinates.
            node.SetAndObserveObjectToNodeMatrix(vtkMatrixFrom(objectToWorld))
            node.SetSize(*size)
        finally:
            node.EndModify(wasModifying)

    def clearFrame(self) -> None:
        self.setPoints(self.frames.currentFrame(), [], [])
        self.showPoints()

    def undo(self) -> bool:
        if self.propagating and self.session.undo_stack.peek() is self.session.group_entry(self.propagation.group):
            self.stopPropagation()  # undoing a running propagation stops it
        entry = self.session.undo()
        if entry is None:
            self.onStatus("Nothing to undo.")
            return False
        self._savePrompts()
        self.onPromptsRestored()
        self.onMasksChanged(entry.frames)
        self.onStatus(f"Undid {entry.description}.")
        return True

    def _savePrompts(self) -> None:
        self.frames.persistentNode.SetAttribute(PROMPTS_ATTRIBUTE, json.dumps(self.session.prompts.to_json()))

    # -- frames and propagation -------------------------------------------------------------------------
    def goToFrame(self, frame: int) -> None:
        self.frames.showFrame(min(max(int(frame), 0), self.frames.n_frames - 1))

    @property
    def propagating(self) -> bool:
        return self.propagation is not None and not self.propagation.finished

    def propagate(self, count=None):
        """Propagates the shown frame's mask over the next `count` frames (None: whole loop, both ways).

        Runs in chunks (SAMUSSegmentLib.chunks): one request per window of frames growing outward from
        the shown frame, each answer written at once, so the user sees the masks arrive and can stop
        between two requests (stopPropagation). Returns the ChunkedPropagation.
        """
        self.requireClient()
        if PROPAGATION_MODEL not in self.info.get("models", {}):
            raise ServerError(f"The server has no '{PROPAGATION_MODEL}' task; update the SAMUS app.")
        if self.propagating:
            raise ValueError("a propagation is running: wait for it or press Stop")
        self.session.set_stack(self.frames.stack())
        frame = self.frames.currentFrame()
        run = ChunkedPropagation(self.session, self.segmentId, frame, count, "forward" if count else "both",
                                 self.chunkFrames)
        job = run.start()
        if job is None:
            raise ValueError(f"there is no frame to propagate to from frame {frame + 1}")
        self.propagation = run
        covered, total = run.plan.progress()
        hint = propagation_hint(self.propagateChoice, self.propagateChoices, total - 1)
        self.onPropagationProgress(f"Propagating over {total} frames from frame {frame + 1}.{hint}")
        self._run(job)
        return run

    def stopPropagation(self) -> None:
        """Sends no further chunk; the answer of the one running is dropped. The frames shown stay."""
        run = self.propagation
        if run is None or run.finished:
            return
        run.stop()
        self.onPropagationProgress(run.describe())
        self.onStatus("Propagation stopped.")

    # -- running jobs ------------------------------------------------------------------------------------
    def _run(self, job) -> None:
        session, epoch = self.session, self._epoch
        self.runner.submit(lambda: session.execute(job), on_done=lambda result: self._applied(session, result, epoch),
                           on_error=lambda exc: self._failed(job, exc), label=job.description)

    def _failed(self, job, exc) -> None:
        if self.propagation is not None and self.propagation.owns(job):
            self.propagation.stop()  # no further chunk after a failed one
            self.onPropagationProgress(self.propagation.describe())
        self.onError(f"{job.description} failed: {exc}")

    def _applied(self, session, result, epoch) -> None:
        if epoch != self._epoch:
            return  # the scene this job wrote into was closed meanwhile
        job = result.job
        if job.kind == "propagate" and job.group is not None:
            self._appliedChunk(result)
            return
        frames = session.apply(result)
        meta = result.meta
        if job.kind == "submit":
            self.onStatus(f"Label saved on the server for image '{meta.get('image', '?')}' "
                          f"({len(job.params['labelled_frames'])} labelled frames).")
        elif job.kind == "propagate":
            stopped = meta.get("stopped_at")
            stopped = [stopped] if isinstance(stopped, int) else list(stopped or [])
            where = f" (stopped at frame {', '.join(str(f + 1) for f in stopped)})" if stopped else ""
            self.onStatus(f"Propagated to {len(frames)} frames{where}.")
        elif frames and job.kind == "interactive":
            score = meta.get("score")
            self.onStatus(f"Frame {job.frame + 1} segmented" + (f" (score {score:.2f})" if score is not None else "")
                          + (", cached embedding" if meta.get("cache_hit") else "") + ".")
        if frames:
            self.onMasksChanged(frames)

    def _appliedChunk(self, result) -> None:
        """One chunk of the running propagation: write it, show it, and send the next one."""
        run = self.propagation
        if run is None or not run.owns(result.job):
            return  # stopped, undone or replaced meanwhile
        frames, nextJob = run.on_result(result)
        if nextJob is not None:
            self._run(nextJob)
        self.onPropagationProgress(run.describe())
        if run.finished:
            self.onStatus(run.describe())
        if frames:
            self.onMasksChanged(frames)

    # -- labels, training and samples ------------------------------------------------------------------------
    def submitLabels(self):
        self.requireClient()
        segmentation = self.segmentationNode.GetSegmentation()
        segments = [(segmentation.GetNthSegmentID(n), segmentation.GetNthSegment(n).GetName())
                    for n in range(segmentation.GetNumberOfSegments())]
        self.session.set_stack(self.frames.stack())
        job = self.session.submit_labels(segments)
        self._run(job)
        return job

    def startTraining(self, params=None, onDone=None, onError=None) -> None:
        self.requireClient()
        client = self.client
        self.runner.submit(lambda: client.train_start(TRAINER, params or {}), on_done=onDone,
                           on_error=onError or self.onError, label="starting training")

    def stopTraining(self, onDone=None, onError=None) -> None:
        self.requireClient()
        self.runner.submit(self.client.train_stop, on_done=onDone, on_error=onError or self.onError,
                           label="stopping training")

    def trainingStatus(self, onDone, onError=None) -> None:
        self.requireClient()
        client = self.client
        self.runner.submit(lambda: read_training(client), on_done=onDone,
                           on_error=onError or self.onError, label="reading training status")

    def nextSample(self, strategy: str, onLoaded) -> None:
        """Asks the strategy for the next image, downloads and loads it; onLoaded(node or None)."""
        self.requireClient()
        client = self.client

        def fetch():
            sample = client.next_sample(strategy, {"client_id": "3D Slicer"})
            if not sample or "id" not in sample:
                return None
            data, filename = client.download_image(sample["id"])
            return sample["id"], data, filename

        def load(fetched):
            if fetched is None:
                onLoaded(None)
                return
            imageId, data, filename = fetched
            folder = tempfile.mkdtemp(prefix="samus_sample_")
            path = os.path.join(folder, os.path.basename(filename))
            with open(path, "wb") as f:
                f.write(data)
            node = slicer.util.loadVolume(path, {"name": imageId, "singleFile": True})
            frames = frameSourceFor(node)
            # The server already has this image: remember its id instead of uploading a copy.
            self.uploader.remember(frames.changeKey(), imageId)
            onLoaded(node)

        self.runner.submit(fetch, on_done=load, on_error=self.onError, label=f"fetching the next sample ({strategy})")
