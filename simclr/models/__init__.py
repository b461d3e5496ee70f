"""The networks and the loss: ResNet with the CIFAR stem, the projection head, NT-Xent, and the collectives
that gather embeddings across processes with their gradients.
"""
