"""What an encoder learned: backbone features of a set of images, the weighted kNN classifier, and the
figures (view pairs, embedding map, confusion matrix).
"""
